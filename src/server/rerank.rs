//! `POST /v1/rerank` (the Jina / Cohere shape vLLM and TEI serve): a cross-encoder
//! (`BertForSequenceClassification`, `XLMRobertaForSequenceClassification`: bge-reranker,
//! ms-marco-MiniLM) scores each document against the query — the pair through the
//! tokenizer's pair template, the classification head over its first token — and the
//! documents come back most relevant first, `relevance_score` the logit's sigmoid (what
//! sentence-transformers' `CrossEncoder.predict` gives a one-label model). The pairs
//! run in traversals shared as `/v1/embeddings`' inputs do; a pair longer than the
//! context is refused, never truncated.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::embeddings::MAX_INPUTS;
use super::error::ApiError;
use super::openai::{bad, check_model};
use super::params;
use super::routes::json_body;
use super::state::AppState;
use super::typed::new_id;
use crate::engine::EmbedInput;
use crate::error::Error;

/// `POST /v1/rerank`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RerankBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// The query every document is scored against (not empty).
    pub query: Value,
    /// The documents: strings, or objects with a `text` string (1 to 2048).
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    /// Return only the best this many (default: all).
    #[serde(default, deserialize_with = "params::int::opt_i64")]
    #[schema(minimum = 1)]
    pub top_n: Option<i64>,
    /// Echo each document's text in its result (default true).
    #[serde(default)]
    pub return_documents: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RerankDocument {
    pub text: String,
}

/// One document's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerankResult {
    /// The document's place in the request.
    pub index: usize,
    /// Its text, unless `return_documents` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<RerankDocument>,
    /// sigmoid(logit), in (0, 1): higher is more relevant.
    pub relevance_score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RerankUsage {
    /// Tokens of all the pairs (the special tokens of the pair template included).
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RerankList {
    pub id: String,
    pub model: String,
    pub usage: RerankUsage,
    /// Most relevant first (ties in the documents' order).
    pub results: Vec<RerankResult>,
}

/// A document's text: a string, or an object's `text`.
fn document_text(i: usize, d: &Value) -> Result<String, ApiError> {
    let text = match d {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("text").and_then(Value::as_str),
        _ => None,
    };
    match text {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        Some(_) => Err(bad("documents", format!("documents[{i}] is empty"))),
        None => Err(bad(
            "documents",
            format!("documents[{i}] must be a string or an object with a \"text\" string"),
        )),
    }
}

/// The logistic function of a logit.
fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// A one-label cross-encoder's scores from its logits (the engine's reply to pairs):
/// each logit's sigmoid; a head of more labels is the request's 400 (`what`: the
/// endpoint's work, for the message).
pub(super) fn pair_scores(logits: &[Vec<f32>], what: &str) -> Result<Vec<f64>, ApiError> {
    if let Some(v) = logits.iter().find(|v| v.len() != 1) {
        return Err(bad(
            "model",
            format!(
                "the loaded cross-encoder has {} labels: {what} needs a one-label model",
                v.len()
            ),
        ));
    }
    Ok(logits.iter().map(|v| sigmoid(v[0])).collect())
}

/// Rerank the documents against the query with the loaded cross-encoder.
#[utoipa::path(post, path = "/v1/rerank", tag = "openai", request_body = RerankBody,
    responses(
        (status = 200, body = RerankList),
        (status = 400, description = "invalid parameter (`error.param` names it): an empty query or document, no documents or more than 2048, a pair longer than the context, `top_n` below 1; or the loaded model is not a cross-encoder with one label"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 503, description = "no model loaded, or the engine queue is full"),
        (status = 504, description = "deadline passed")))]
pub async fn rerank(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let b: RerankBody = json_body(&st, body).await?;
    let m = st.engine.model_snapshot();
    check_model(&b.model, &m)?;
    let query = match &b.query {
        Value::String(q) if !q.is_empty() => q.clone(),
        _ => return Err(bad("query", "query must be a non-empty string")),
    };
    if b.documents.is_empty() || b.documents.len() > MAX_INPUTS {
        return Err(bad(
            "documents",
            format!(
                "{} documents: 1 to {MAX_INPUTS} a request",
                b.documents.len()
            ),
        ));
    }
    let texts = b
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| document_text(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    let top_n = match b.top_n {
        None => texts.len(),
        Some(n) if n >= 1 => (n as u64).min(texts.len() as u64) as usize,
        Some(n) => return Err(bad("top_n", format!("top_n ({n}) must be at least 1"))),
    };
    let pairs = texts
        .iter()
        .map(|t| EmbedInput::Pair(query.clone(), t.clone()))
        .collect();
    let reply = st.engine.embed(pairs).await.map_err(|e| match e {
        // (the pair at fault is input[i]: document i)
        Error::InvalidInput(m) => {
            ApiError::from(Error::InvalidInput(m.replace("input[", "documents[")))
                .param("documents")
        }
        e => ApiError::from(e),
    })?;
    let scores = pair_scores(&reply.vectors, "reranking")?;
    let mut results: Vec<RerankResult> = scores
        .into_iter()
        .enumerate()
        .map(|(index, relevance_score)| RerankResult {
            index,
            document: (b.return_documents != Some(false)).then(|| RerankDocument {
                text: texts[index].clone(),
            }),
            relevance_score,
        })
        .collect();
    results.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    results.truncate(top_n);
    Ok(Json(RerankList {
        id: new_id("rerank"),
        model: m.model_id,
        usage: RerankUsage {
            total_tokens: reply.tokens.iter().sum(),
        },
        results,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_strings_or_texts() {
        assert_eq!(document_text(0, &Value::from("a")).unwrap(), "a");
        let o = serde_json::json!({"text": "b", "title": "t"});
        assert_eq!(document_text(0, &o).unwrap(), "b");
        for bad in [
            serde_json::json!(3),
            serde_json::json!({"body": "x"}),
            Value::from(""),
        ] {
            assert!(document_text(2, &bad).is_err());
        }
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
        assert!(sigmoid(3.0) > sigmoid(-1.0));
    }
}
