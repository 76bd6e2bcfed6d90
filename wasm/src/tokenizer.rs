//! wasm-bindgen wrappers for qvq-tokenizer. Errors cross as JS `Error`s whose `name` is the
//! TypeScript class src/tokenizer.ts rethrows them as ("ModelFileError", "InvalidInputError").

use std::rc::Rc;

use qvq_tokenizer::{Error, StreamDecoder, Tokenizer};
use wasm_bindgen::prelude::*;

fn js_error(e: Error) -> JsValue {
    let (name, message) = match &e {
        Error::ModelFile(m) => ("ModelFileError", m),
        Error::InvalidInput(m) => ("InvalidInputError", m),
    };
    let err = js_sys::Error::new(message);
    err.set_name(name);
    err.into()
}

/// A token id from JavaScript: an integer that fits u32 (range against the vocab is checked by
/// the tokenizer, which knows it).
fn to_id(x: f64) -> Result<u32, JsValue> {
    if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
        Ok(x as u32)
    } else {
        Err(js_error(Error::InvalidInput(format!(
            "token id {x} is not a non-negative integer"
        ))))
    }
}

/// A loaded tokenizer.json.
#[wasm_bindgen(js_name = TokTokenizer)]
pub struct TokTokenizer {
    inner: Rc<Tokenizer>,
}

#[wasm_bindgen(js_class = TokTokenizer)]
impl TokTokenizer {
    /// Parses tokenizer.json's bytes, then adds tokenizer_config.json's `added_tokens_decoder`
    /// (the JSON object's bytes) if given.
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(
        json: &[u8],
        added_tokens_decoder: Option<Vec<u8>>,
    ) -> Result<TokTokenizer, JsValue> {
        let mut t = Tokenizer::from_json(json).map_err(js_error)?;
        if let Some(extra) = added_tokens_decoder {
            t.add_tokens_decoder(&extra).map_err(js_error)?;
        }
        Ok(TokTokenizer { inner: Rc::new(t) })
    }

    /// Ids of `text` (a Uint32Array; ids are below 2^31).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner.encode(text)
    }

    /// Text of `ids` (any array-like of numbers).
    pub fn decode(&self, ids: &[f64], skip_special: bool) -> Result<String, JsValue> {
        let ids = ids
            .iter()
            .map(|&x| to_id(x))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.decode(&ids, skip_special).map_err(js_error)
    }

    #[wasm_bindgen(js_name = tokenToId)]
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    #[wasm_bindgen(js_name = idToToken)]
    pub fn id_to_token(&self, id: f64) -> Option<String> {
        to_id(id)
            .ok()
            .and_then(|id| self.inner.id_to_token(id))
            .map(str::to_string)
    }

    #[wasm_bindgen(getter, js_name = vocabSize)]
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    /// A streaming decoder; it keeps the tokenizer alive while it lives.
    #[wasm_bindgen(js_name = streamDecoder)]
    pub fn stream_decoder(&self, skip_special: bool) -> TokStreamDecoder {
        TokStreamDecoder {
            tokenizer: self.inner.clone(),
            inner: StreamDecoder::new(skip_special),
        }
    }
}

/// Text deltas from ids pushed one at a time.
#[wasm_bindgen(js_name = TokStreamDecoder)]
pub struct TokStreamDecoder {
    tokenizer: Rc<Tokenizer>,
    inner: StreamDecoder,
}

#[wasm_bindgen(js_class = TokStreamDecoder)]
impl TokStreamDecoder {
    pub fn push(&mut self, id: f64) -> Result<String, JsValue> {
        self.inner
            .push(&self.tokenizer, to_id(id)?)
            .map_err(js_error)
    }

    pub fn flush(&mut self) -> String {
        self.inner.flush()
    }
}
