//! Element types of the safetensors format.

/// Every dtype the safetensors format defines. All of them can be parsed and validated (their
/// sizes are known); [`crate::convert`] reads BF16, F16, F32, I32 and I64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// (dtype, name in the header, bytes per element)
const TABLE: [(DType, &str, usize); 15] = [
    (DType::Bool, "BOOL", 1),
    (DType::U8, "U8", 1),
    (DType::I8, "I8", 1),
    (DType::F8E5M2, "F8_E5M2", 1),
    (DType::F8E4M3, "F8_E4M3", 1),
    (DType::I16, "I16", 2),
    (DType::U16, "U16", 2),
    (DType::F16, "F16", 2),
    (DType::BF16, "BF16", 2),
    (DType::I32, "I32", 4),
    (DType::U32, "U32", 4),
    (DType::F32, "F32", 4),
    (DType::F64, "F64", 8),
    (DType::I64, "I64", 8),
    (DType::U64, "U64", 8),
];

impl DType {
    /// The names, for error messages.
    pub const ALL_NAMES: &str =
        "BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64";

    /// The dtype a header names, e.g. `"BF16"`; `None` for names the format does not define.
    pub fn from_name(name: &str) -> Option<DType> {
        TABLE
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(d, _, _)| *d)
    }

    /// The name used in headers.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(d, _, _)| *d == self)
            .expect("every dtype is in TABLE")
            .1
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        TABLE
            .iter()
            .find(|(d, _, _)| *d == self)
            .expect("every dtype is in TABLE")
            .2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_match_the_format() {
        for (d, n, s) in TABLE {
            assert_eq!(DType::from_name(n), Some(d));
            assert_eq!(d.name(), n);
            assert_eq!(d.size(), s);
            assert!(DType::ALL_NAMES.contains(n));
        }
        assert_eq!(DType::from_name("bf16"), None);
        assert_eq!(DType::from_name("F8_E4M3FN"), None);
    }
}
