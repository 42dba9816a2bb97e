//! `POST /v1/score` (vLLM's): how well each text of `text_2` answers `text_1` — one
//! `text_1` against every `text_2`, or lists of the same length pair by pair. A
//! cross-encoder scores each pair as `/v1/rerank` does (the logit's sigmoid); any other
//! model embeds both sides as `/v1/embeddings` does and the score is the cosine of the
//! two embeddings (what sentence-transformers' `similarity` gives an embedding model).

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::embeddings::{unit_prefix, MAX_INPUTS};
use super::error::ApiError;
use super::openai::{bad, check_model, now_secs};
use super::rerank::pair_scores;
use super::routes::json_body;
use super::state::AppState;
use super::typed::new_id;
use crate::engine::EmbedInput;
use crate::error::Error;

/// `POST /v1/score`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScoreBody {
    /// Must name the loaded model (`GET /v1/models`); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// A text, or a list of texts as long as `text_2`'s.
    #[schema(value_type = Object)]
    pub text_1: Value,
    /// A text, or a list of texts (1 to 2048), none empty.
    #[schema(value_type = Object)]
    pub text_2: Value,
}

/// One pair's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreData {
    /// The pair's place: `text_2`'s index.
    pub index: usize,
    /// "score"
    pub object: &'static str,
    /// A cross-encoder's sigmoid(logit) in (0, 1), or the embeddings' cosine in [-1, 1].
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreList {
    pub id: String,
    /// "list"
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub data: Vec<ScoreData>,
    pub usage: ScoreUsage,
}

/// `v` as a list of non-empty texts (a lone string: a list of one); `param` names it.
fn texts(v: &Value, param: &'static str) -> Result<Vec<String>, ApiError> {
    let list = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                bad(
                    param,
                    format!("{param} must be a string or a list of strings"),
                )
            })?,
        _ => {
            return Err(bad(
                param,
                format!("{param} must be a string or a list of strings"),
            ))
        }
    };
    if list.is_empty() || list.len() > MAX_INPUTS {
        return Err(bad(
            param,
            format!("{param} holds {} texts: 1 to {MAX_INPUTS}", list.len()),
        ));
    }
    if let Some(i) = list.iter().position(String::is_empty) {
        return Err(bad(param, format!("{param}[{i}] is empty")));
    }
    Ok(list)
}

/// The pairs of `text_1` and `text_2`: one first text against every second, or the
/// lists side by side.
fn pairs(first: Vec<String>, second: Vec<String>) -> Result<Vec<(String, String)>, ApiError> {
    match (first.len(), second.len()) {
        (1, _) => Ok(second.into_iter().map(|b| (first[0].clone(), b)).collect()),
        (n, m) if n == m => Ok(first.into_iter().zip(second).collect()),
        (n, m) => Err(bad(
            "text_1",
            format!("text_1 holds {n} texts and text_2 {m}: give one text_1, or as many as text_2"),
        )),
    }
}

/// The cosine of two vectors (0 when either is zero).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (a, b) = (unit_prefix(a, a.len()), unit_prefix(b, b.len()));
    a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Score pairs of texts with the loaded model.
#[utoipa::path(post, path = "/v1/score", tag = "openai", request_body = ScoreBody,
    responses(
        (status = 200, body = ScoreList),
        (status = 400, description = "invalid parameter (`error.param` names it): an empty text, lists of different lengths, more than 2048 texts, a text or pair longer than the context; a cross-encoder of more than one label"),
        (status = 404, description = "`model` is not the loaded model"),
        (status = 503, description = "no model loaded, or the engine queue is full"),
        (status = 504, description = "deadline passed")))]
pub async fn score(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let b: ScoreBody = json_body(&st, body).await?;
    let m = st.engine.model_snapshot();
    check_model(&b.model, &m)?;
    let pairs = pairs(texts(&b.text_1, "text_1")?, texts(&b.text_2, "text_2")?)?;
    let at_fault = |e: Error| match e {
        Error::InvalidInput(msg) => ApiError::from(Error::InvalidInput(msg)).param("text_2"),
        e => ApiError::from(e),
    };
    let (scores, tokens) = if m.cross_encoder {
        let inputs = pairs
            .iter()
            .map(|(a, b)| EmbedInput::Pair(a.clone(), b.clone()))
            .collect();
        let reply = st.engine.embed(inputs).await.map_err(at_fault)?;
        let scores = pair_scores(&reply.vectors, "scoring")?;
        (scores, reply.tokens.iter().sum())
    } else {
        // both sides embedded in one request: the first texts, then the second
        let inputs = pairs
            .iter()
            .flat_map(|(a, b)| [EmbedInput::Text(a.clone()), EmbedInput::Text(b.clone())])
            .collect();
        let reply = st.engine.embed(inputs).await.map_err(at_fault)?;
        let scores = reply
            .vectors
            .chunks(2)
            .map(|ab| cosine(&ab[0], &ab[1]))
            .collect();
        (scores, reply.tokens.iter().sum())
    };
    let data = scores
        .into_iter()
        .enumerate()
        .map(|(index, score)| ScoreData {
            index,
            object: "score",
            score,
        })
        .collect();
    Ok(Json(ScoreList {
        id: new_id("score"),
        object: "list",
        created: now_secs(),
        model: m.model_id,
        data,
        usage: ScoreUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            completion_tokens: 0,
        },
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_pair_one_against_many_or_side_by_side() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = pairs(s(&["q"]), s(&["a", "b"])).unwrap();
        assert_eq!(p, vec![("q".into(), "a".into()), ("q".into(), "b".into())]);
        let p = pairs(s(&["x", "y"]), s(&["a", "b"])).unwrap();
        assert_eq!(p[1], ("y".into(), "b".into()));
        assert!(pairs(s(&["x", "y"]), s(&["a", "b", "c"])).is_err());
        assert!(texts(&serde_json::json!([]), "text_2").is_err());
        assert!(texts(&serde_json::json!(["a", ""]), "text_2").is_err());
        assert!(texts(&serde_json::json!([1]), "text_2").is_err());
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
    }
}
