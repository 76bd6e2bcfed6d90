//! qvq-safetensors: reads the safetensors format without holding a file in memory.
//!
//! The caller (TypeScript, via the thin layer in `wasm/src/safetensors.rs`) does the I/O: it reads
//! the 8-byte length ([`header_length`]), then the header ([`parse_header`], which validates the
//! whole layout and names the tensor at fault), then each tensor's bytes in slices, which
//! [`Converter`] turns into f16/f32/i32.

pub mod convert;
pub mod dtype;
pub mod header;
pub mod json;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;

pub use convert::{ConvertError, Target, convert};
pub use dtype::DType;
pub use header::{
    ErrorKind, Header, HeaderError, MAX_HEADER_BYTES, TensorEntry, header_length, parse_header,
};

/// Converts slices of tensor data into a reusable output buffer, so converting a huge tensor in
/// fixed-size slices allocates once.
#[derive(Default)]
pub struct Converter {
    out: Vec<u8>,
}

impl Converter {
    pub fn new() -> Converter {
        Converter::default()
    }

    /// Converts `src` (elements of `from`) to `to`; the result is valid until the next call.
    /// `first_element` is the index of `src`'s first element in the whole tensor, so an
    /// out-of-range error points at the tensor's element, not the slice's.
    pub fn convert(
        &mut self,
        from: DType,
        to: Target,
        src: &[u8],
        first_element: u64,
    ) -> Result<&[u8], ConvertError> {
        let n = src.len() / from.size() * to.size();
        self.out.resize(n, 0);
        convert(from, to, src, &mut self.out).map_err(|e| match e {
            ConvertError::OutOfRange { index, value } => ConvertError::OutOfRange {
                // u64 and saturating: no overflow whatever the caller passes (a wasm32 usize
                // would have cut an offset past 2^32 elements).
                index: index.saturating_add(first_element),
                value,
            },
            e => e,
        })?;
        Ok(&self.out)
    }

    /// Start of the output buffer (for a JavaScript view of the last result).
    pub fn output_ptr(&self) -> *const u8 {
        self.out.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converter_reuses_its_buffer_across_sizes() {
        let mut c = Converter::new();
        let big = c
            .convert(DType::BF16, Target::F32, &[0x80, 0x3F, 0x00, 0x40], 0)
            .unwrap();
        assert_eq!(big, [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]);
        let small = c
            .convert(DType::F32, Target::F16, &1.5f32.to_le_bytes(), 0)
            .unwrap();
        assert_eq!(small, 0x3E00u16.to_le_bytes());
    }

    #[test]
    fn converter_reports_out_of_range_at_the_tensor_index() {
        let src: Vec<u8> = [1i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = Converter::new()
            .convert(DType::I64, Target::I32, &src, 1000)
            .unwrap_err();
        assert_eq!(
            e,
            ConvertError::OutOfRange {
                index: 1001,
                value: 1 << 40
            }
        );
    }

    #[test]
    fn converter_names_an_element_past_usize_without_overflowing() {
        // Found by tests/fuzz.rs: a first_element near the top of the range overflowed
        // ("attempt to add with overflow"), and the wasm layer cut it to 32 bits first.
        let src: Vec<u8> = [7i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut c = Converter::new();
        let e = c
            .convert(DType::I64, Target::I32, &src, 1 << 40)
            .unwrap_err();
        assert_eq!(
            e,
            ConvertError::OutOfRange {
                index: (1 << 40) + 1,
                value: 1 << 40
            }
        );
        let e = c
            .convert(DType::I64, Target::I32, &src, u64::MAX)
            .unwrap_err();
        assert_eq!(
            e,
            ConvertError::OutOfRange {
                index: u64::MAX,
                value: 1 << 40
            }
        );
    }
}
