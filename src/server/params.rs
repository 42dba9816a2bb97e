//! The one validator of generation parameters. `/api/v1/generate` (and the WebSocket's
//! `inference` messages) and `/v1/completions` ask for the same things with their own
//! names, defaults and limits; each API's limits are a named [`Limits`] constant, the
//! rules and their error messages are written once, and so is the default seed.

use super::error::ApiError;
use crate::model::sampling::SamplingParams;

/// Integer request fields take what JSON Schema calls an integer — `73` and `73.0`
/// alike, any number without a fractional part — so the OpenAPI document and the
/// parser agree. For `#[serde(deserialize_with = ...)]`.
pub mod int {
    use serde::de::{Deserializer, Error};
    use serde::Deserialize;

    fn whole<E: Error>(v: serde_json::Value) -> Result<i128, E> {
        let n = match &v {
            serde_json::Value::Number(n) => n,
            other => {
                return Err(E::custom(format!(
                    "invalid type: {}, expected an integer",
                    kind(other)
                )))
            }
        };
        if let Some(i) = n.as_i64() {
            return Ok(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return Ok(i128::from(u));
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => Ok(f as i128),
            _ => Err(E::custom(format!(
                "invalid value: {n}, expected an integer"
            ))),
        }
    }

    fn kind(v: &serde_json::Value) -> &'static str {
        match v {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        }
    }

    fn narrow<T: TryFrom<i128>, E: Error>(i: i128) -> Result<T, E> {
        T::try_from(i).map_err(|_| E::custom(format!("{i} is out of range")))
    }

    /// A required (or defaulted) `i64`.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        narrow(whole(serde_json::Value::deserialize(d)?)?)
    }

    /// An optional `i64` (`null` is absent).
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => narrow(whole(v)?).map(Some),
        }
    }

    /// Token ids (`u32`).
    pub fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        Vec::<serde_json::Value>::deserialize(d)?
            .into_iter()
            .map(|v| narrow(whole(v)?))
            .collect()
    }

    /// An optional `u64` (`null` is absent).
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => narrow(whole(v)?).map(Some),
        }
    }
}

/// What one API allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The name of the new-token count in this API (`max_new_tokens`, `max_tokens`).
    pub tokens_field: &'static str,
    /// Fewest new tokens (0: the prompt alone may be scored).
    pub min_tokens: i64,
    pub max_tokens: i64,
    pub max_temperature: f64,
    /// Most stop strings.
    pub max_stops: usize,
    /// How a rejected `stop` is described.
    pub stop_rule: &'static str,
}

/// Longest stop string, in characters (what the OpenAPI `maxLength` counts).
pub const MAX_STOP_CHARS: usize = 256;
/// Largest `top_k`.
pub const MAX_TOP_K: i64 = 100_000;

/// `/api/v1/generate` and the WebSocket's `inference` messages.
pub const V1: Limits = Limits {
    tokens_field: "max_new_tokens",
    min_tokens: 1,
    max_tokens: 4096,
    max_temperature: 10.0,
    max_stops: 16,
    stop_rule: "stop: at most 16 strings of 1 to 256 characters",
};

/// `/v1/completions` (OpenAI's bounds: temperature up to 2, four stop strings).
pub const OPENAI: Limits = Limits {
    tokens_field: "max_tokens",
    min_tokens: 0,
    max_tokens: 4096,
    max_temperature: 2.0,
    max_stops: 32,
    stop_rule: "stop must be a string or an array of at most 32 strings of 1 to 256 characters",
};

/// The parameters as a request gave them (after each API's own defaults).
#[derive(Clone, Debug)]
pub struct Requested {
    pub max_tokens: i64,
    pub temperature: f64,
    pub top_k: i64,
    pub top_p: f64,
    /// `None`: a fresh seed ([`default_seed`]).
    pub seed: Option<i128>,
    pub stop: Vec<String>,
}

/// The parameters checked: new tokens, the sampler's parameters, the stop strings.
#[derive(Clone, Debug)]
pub struct Checked {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

/// A seed for a request that gave none: the clock's nanoseconds.
pub fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn bad(field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::invalid(detail).param(field)
}

/// Check every rule of `limits`; the error names the field (`detail` and `param`).
pub fn check(r: Requested, limits: &Limits) -> Result<Checked, ApiError> {
    let field = limits.tokens_field;
    if !(limits.min_tokens..=limits.max_tokens).contains(&r.max_tokens) {
        return Err(bad(
            field,
            format!(
                "{field} ({}) must be between {} and {}",
                r.max_tokens, limits.min_tokens, limits.max_tokens
            ),
        ));
    }
    if !(0.0..=limits.max_temperature).contains(&r.temperature) {
        return Err(bad(
            "temperature",
            format!(
                "temperature ({}) must be between 0 and {}",
                r.temperature, limits.max_temperature
            ),
        ));
    }
    if !(0..=MAX_TOP_K).contains(&r.top_k) {
        return Err(bad(
            "top_k",
            format!("top_k ({}) must be between 0 and {MAX_TOP_K}", r.top_k),
        ));
    }
    if !(r.top_p > 0.0 && r.top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("top_p ({}) must be in (0, 1]", r.top_p),
        ));
    }
    let seed = match r.seed {
        None => default_seed(),
        Some(s) if (0..=i64::MAX as i128).contains(&s) => s as u64,
        Some(s) => {
            return Err(bad(
                "seed",
                format!(
                    "seed ({s}) must be between 0 and {} (a signed 64-bit integer)",
                    i64::MAX
                ),
            ))
        }
    };
    if r.stop.len() > limits.max_stops
        || r.stop
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > MAX_STOP_CHARS)
    {
        return Err(bad("stop", limits.stop_rule));
    }
    Ok(Checked {
        max_tokens: r.max_tokens as usize,
        sampling: SamplingParams {
            temperature: r.temperature as f32,
            top_k: r.top_k as usize,
            top_p: r.top_p as f32,
            seed,
        },
        stop: r.stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Requested {
        Requested {
            max_tokens: 8,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: Some(7),
            stop: Vec::new(),
        }
    }

    #[test]
    fn each_api_has_its_bounds() {
        let zero = Requested {
            max_tokens: 0,
            ..base()
        };
        assert!(check(zero.clone(), &OPENAI).is_ok());
        let e = check(zero, &V1).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_new_tokens"));
        assert!(e.detail.contains("between 1 and 4096"), "{}", e.detail);
        let hot = Requested {
            temperature: 5.0,
            ..base()
        };
        assert!(check(hot.clone(), &V1).is_ok());
        assert_eq!(
            check(hot, &OPENAI).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        // OpenAI caps stop at 4; this API takes 32, so that clients adding an eos text
        // to a task's own stops are not refused
        let stops = |n: usize| Requested {
            stop: vec!["a".into(); n],
            ..base()
        };
        assert!(check(stops(16), &V1).is_ok());
        assert_eq!(check(stops(17), &V1).unwrap_err().detail, V1.stop_rule);
        assert!(check(stops(32), &OPENAI).is_ok());
        assert_eq!(
            check(stops(33), &OPENAI).unwrap_err().detail,
            OPENAI.stop_rule
        );
    }

    #[test]
    fn shared_rules_name_their_field() {
        for (r, field) in [
            (
                Requested {
                    top_k: -1,
                    ..base()
                },
                "top_k",
            ),
            (
                Requested {
                    top_k: MAX_TOP_K + 1,
                    ..base()
                },
                "top_k",
            ),
            (
                Requested {
                    top_p: 0.0,
                    ..base()
                },
                "top_p",
            ),
            (
                Requested {
                    top_p: 1.5,
                    ..base()
                },
                "top_p",
            ),
            (
                Requested {
                    seed: Some(-1),
                    ..base()
                },
                "seed",
            ),
            (
                Requested {
                    seed: Some(i64::MAX as i128 + 1),
                    ..base()
                },
                "seed",
            ),
            (
                Requested {
                    stop: vec![String::new()],
                    ..base()
                },
                "stop",
            ),
            (
                Requested {
                    stop: vec!["x".repeat(MAX_STOP_CHARS + 1)],
                    ..base()
                },
                "stop",
            ),
        ] {
            for limits in [&V1, &OPENAI] {
                let e = check(r.clone(), limits).unwrap_err();
                assert_eq!(e.param.as_deref(), Some(field), "{}", e.detail);
                assert_eq!(e.code, "INVALID_INPUT");
            }
        }
    }

    #[test]
    fn a_given_seed_is_kept_and_a_missing_one_drawn() {
        let c = check(base(), &V1).unwrap();
        assert_eq!(c.sampling.seed, 7);
        assert_eq!(c.max_tokens, 8);
        let c = check(
            Requested {
                seed: None,
                ..base()
            },
            &OPENAI,
        )
        .unwrap();
        assert_ne!(c.sampling.seed, 0);
    }
}
