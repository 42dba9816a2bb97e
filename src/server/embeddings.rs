//! `POST /v1/embeddings` (OpenAI's): each input's embedding is its last position's
//! hidden state after the final norm — last-token pooling, what decoder embedding
//! models (Qwen3-Embedding, e5-mistral, gte-Qwen2) are trained for; any loaded model
//! answers the same way — L2-normalised. `dimensions` keeps the first n (Matryoshka
//! models) and normalises those; `encoding_format` is "float" or "base64" (the
//! little-endian f32 bytes, what the `openai` Python SDK asks for by default). The
//! inputs run in traversals shared by up to `MAX_PREFILL_PARTS` of them, without the
//! LM head; an input longer than the context is refused, never truncated.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::openai::{bad, check_model, parse_inputs, Prompt};
use super::params;
use super::routes::json_body;
use super::state::AppState;
use crate::engine::EmbedInput;
use crate::error::Error;

/// Most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// `POST /v1/embeddings`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// A string, an array of strings, an array of token ids, or an array of such
    /// arrays: one embedding each, in order (at most 2048; none empty).
    #[schema(value_type = super::types::PromptInput)]
    pub input: Value,
    /// "float" (default): arrays of numbers; "base64": each embedding's little-endian
    /// f32 bytes in base64.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Keep the first this many dimensions (then normalised); default: all (`n_embed`).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1)]
    pub dimensions: Option<i64>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// One input's embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    /// "embedding"
    pub object: &'static str,
    /// The input's place in the request.
    pub index: usize,
    /// The unit vector (an array of numbers), or its f32 bytes in base64.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens of all inputs (the special tokens the tokenizer adds included).
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// "list"
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// The first `dims` values of `v`, scaled to unit length (a zero vector stays zero).
pub fn unit_prefix(v: &[f32], dims: usize) -> Vec<f32> {
    let v = &v[..dims.min(v.len())];
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return v.to_vec();
    }
    v.iter().map(|&x| (x as f64 / norm) as f32).collect()
}

/// Embed the inputs with the loaded model.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsBody,
    responses(
        (status = 200, body = EmbeddingList),
        (status = 400, description = "invalid parameter (`error.param` names it): an empty or too long input, a token outside the vocabulary, an unknown `encoding_format`, `dimensions` outside 1..=n_embed"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 503, description = "no model loaded, or the engine queue is full"),
        (status = 504, description = "deadline passed")))]
pub async fn embeddings(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let b: EmbeddingsBody = json_body(&st, body).await?;
    let m = st.engine.model_snapshot();
    check_model(&b.model, &m)?;
    let inputs = parse_inputs(&b.input, "input")?;
    if inputs.len() > MAX_INPUTS {
        return Err(bad(
            "input",
            format!("{} inputs: at most {MAX_INPUTS} a request", inputs.len()),
        ));
    }
    let base64 = match b.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(
                "encoding_format",
                format!("encoding_format {other:?}: \"float\" or \"base64\""),
            ))
        }
    };
    let width = m.config.as_ref().map_or(0, |c| c.n_embed);
    let dims = match b.dimensions {
        None => width,
        Some(d) if d >= 1 && d as u64 <= width as u64 => d as usize,
        Some(d) => {
            return Err(bad(
                "dimensions",
                format!("dimensions ({d}) must be between 1 and the model's {width}"),
            ))
        }
    };
    let inputs = inputs
        .into_iter()
        .map(|p| match p {
            Prompt::Text(t) => EmbedInput::Text(t),
            Prompt::Ids(ids) => EmbedInput::Ids(ids),
        })
        .collect();
    let reply = st.engine.embed(inputs).await.map_err(|e| match e {
        Error::InvalidInput(_) => ApiError::from(e).param("input"),
        e => ApiError::from(e),
    })?;
    let data = reply
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let unit = unit_prefix(v, dims);
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = unit.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(unit)
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens = reply.tokens.iter().sum();
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: m.model_id,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_scaled_to_unit_length() {
        let u = unit_prefix(&[3.0, 4.0, 12.0], 2);
        assert_eq!(u, vec![0.6, 0.8]);
        let u = unit_prefix(&[3.0, 4.0, 12.0], 3);
        assert!((u.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(unit_prefix(&[0.0, 0.0], 2), vec![0.0, 0.0]);
    }
}
