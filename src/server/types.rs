//! Request and response bodies of the v1 contract (`shared/spec/api.md`), with
//! their OpenAPI schemas. Field names, types and nesting are the contract.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ModelConfig;
use crate::gpu::AdapterDetails;

/// POST /api/v1/forward
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardBody {
    /// 1..=10000 characters.
    #[schema(example = "Deep learning is", min_length = 1, max_length = 10000)]
    pub text: String,
    /// Return intermediate data.
    #[serde(default)]
    pub capture_data: bool,
    /// 1..=4096: keep at most this many tokens (the first ones).
    #[serde(default, deserialize_with = "crate::server::params::int::opt_i64")]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_length: Option<i64>,
    /// Extension, 0..=100: next-token predictions to return.
    #[serde(
        default = "default_top_k",
        deserialize_with = "crate::server::params::int::i64"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub top_k: i64,
    /// Extension: return attention weights in `captured_data.layers[i].attention.weights`
    /// (`[head][query][key]`): `true` for every layer and head, or
    /// `{"layers": [..], "heads": [..]}` (either may be left out: all), each in the order
    /// asked. Implies `capture_data`; at most 256 tokens.
    #[serde(default)]
    #[schema(value_type = Option<AttentionChoice>, example = json!({"layers": [0], "heads": [0, 1]}))]
    pub capture_attention: Option<serde_json::Value>,
    /// Extension: return `captured_data.logit_lens`, `[layer][position]` the
    /// `logit_lens_top_k` most likely tokens of the residual stream after each layer
    /// through the final layer norm and the LM head. Implies `capture_data`; at most
    /// 256 tokens.
    #[serde(default)]
    pub capture_logit_lens: bool,
    /// Extension, 1..=20 (default 5): tokens per layer and position of the logit lens.
    #[serde(
        default = "default_lens_top_k",
        deserialize_with = "crate::server::params::int::i64"
    )]
    #[schema(minimum = 1, maximum = 20)]
    pub logit_lens_top_k: i64,
}

fn default_top_k() -> i64 {
    5
}

fn default_lens_top_k() -> i64 {
    5
}

/// What `capture_attention` takes (the OpenAPI schema; the handler reads the value).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AttentionChoice {
    /// `true`: every layer and head; `false`: none.
    All(bool),
    Chosen(AttentionSelection),
}

/// Chosen layers and heads (either left out: all of them), and how the weights are
/// sent: `json` nested arrays (the default) or `f16` (`weights_f16`, base64).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AttentionSelection {
    #[schema(min_items = 1, max_items = 1024)]
    layers: Option<Vec<u32>>,
    #[schema(min_items = 1, max_items = 1024)]
    heads: Option<Vec<u32>>,
    format: Option<AttentionFormat>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AttentionFormat {
    Json,
    F16,
}

// The OpenAPI schemas of fields the handlers read as JSON values (never built).

/// Schemas written out with utoipa's builders, for values the derive cannot bound.
mod bounded {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    pub fn text(min: usize, max: Option<usize>) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(max)
    }

    pub fn id() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(u32::MAX))
    }

    pub fn list(items: impl Into<RefOr<Schema>>, min: usize, max: Option<usize>) -> ArrayBuilder {
        ArrayBuilder::new()
            .items(items.into())
            .min_items(Some(min))
            .max_items(max)
    }
}

/// Declares a schema-only type whose schema is `$build`.
macro_rules! schema_only {
    ($(#[$doc:meta])* $name:ident = $build:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $build.build().into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

schema_only!(
    /// A stop string: 1 to 256 characters.
    StopText = bounded::text(1, Some(256))
);
schema_only!(
    /// At most 32 stop strings.
    StopList = bounded::list(bounded::text(1, Some(256)).build(), 0, Some(32))
);
schema_only!(
    /// A prompt text (not empty).
    PromptText = bounded::text(1, None)
);
schema_only!(
    /// Prompt texts, one choice each.
    PromptTexts = bounded::list(bounded::text(1, None).build(), 1, None)
);
schema_only!(
    /// Prompt token ids.
    PromptIds = bounded::list(bounded::id().build(), 1, None)
);
schema_only!(
    /// Lists of prompt token ids, one choice each.
    PromptIdLists = bounded::list(
        bounded::list(bounded::id().build(), 1, None).build(),
        1,
        None
    )
);

schema_only!(
    /// `/v1/responses` input items (at least one): messages, function calls, their
    /// outputs.
    InputItems = bounded::list(utoipa::openapi::schema::ObjectBuilder::new().build(), 1, None)
);

/// A response's input: a string (one user message) or items.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ResponseInput {
    Text(PromptText),
    Items(InputItems),
}

/// Stop strings as the OpenAI APIs take them: one, or a list of at most 32.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StopStrings {
    One(StopText),
    Many(StopList),
}

/// A completion prompt: a string, strings (one choice each), token ids, or lists of
/// token ids; none of them empty.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PromptInput {
    Text(PromptText),
    Texts(PromptTexts),
    Ids(PromptIds),
    IdLists(PromptIdLists),
}

/// A chat message: a role and its content (other fields reach the template as given).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChatMessageIn {
    role: ChatRole,
    /// Required but for an assistant's message with `tool_calls`.
    content: ChatContent,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

/// A string, or text parts (joined by newlines).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ChatContent {
    Text(String),
    Parts(Vec<TextPart>),
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TextPart {
    #[schema(rename = "type")]
    kind: PartKind,
    text: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PartKind {
    Text,
}

/// A response format served: plain text, one JSON object (JSON mode), or one value of
/// a JSON Schema.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FormatKind {
    Text,
    JsonObject,
    JsonSchema,
}

/// `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema",
/// "json_schema": {"name": ..., "schema": {...}}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResponseFormat {
    #[schema(rename = "type")]
    kind: FormatKind,
    /// With `json_schema`: the schema the reply is held to (`schema`; `name`, `strict`
    /// and `description` are accepted and not needed).
    json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JsonSchemaFormat {
    name: Option<String>,
    description: Option<String>,
    /// Always enforced (the keywords the grammar cannot hold are a 400).
    strict: Option<bool>,
    #[schema(value_type = Object)]
    schema: serde_json::Value,
}

/// `none` (calls are not read out of the reply), `auto` (they are, in the format the
/// template teaches), `required` (the reply is a JSON array of one or more `{"name",
/// "parameters"}` calls of the tools, held to their schemas), or a function named:
/// the reply is its arguments, held to its parameters schema.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

/// `{"type": "function", "function": {"name": ...}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NamedToolChoice {
    /// "function"
    #[schema(rename = "type")]
    kind: String,
    #[schema(value_type = Object)]
    function: serde_json::Value,
}

/// A next-token prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopPrediction {
    pub token_id: u32,
    pub token: String,
    pub probability: f32,
}

/// Shape and dtype of a captured tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    /// Keeps the `torch.` spelling existing clients compare against.
    #[schema(example = "torch.float32")]
    pub dtype: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingCapture {
    pub token_embeddings: TensorInfo,
    pub position_embeddings: TensorInfo,
    /// Extension: mean over positions of ‖token + position embedding‖₂.
    pub output_norm_mean: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttentionCapture {
    /// [batch, n_head, tokens, tokens]
    pub attn_weights_shape: Vec<usize>,
    /// Extension, grouped-query models: the key/value heads the query heads share
    /// (query head h reads key/value head h / (n_head / n_kv_head)); weights and
    /// entropies are per query head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_kv_head: Option<usize>,
    /// Extension: per head, the mean over query positions of the entropy (nats) of its
    /// attention distribution; 0 = attends to one token, ln(t+1) = uniform over t+1 keys.
    pub head_entropy: Vec<f32>,
    /// Extension: mean of head_entropy.
    pub mean_entropy: f32,
    /// Extension, block-sparse layers: tokens per block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Extension, block-sparse layers: listed (query block, key block) pairs over all
    /// pairs of this sequence (1.0 = every pair; causal dense ≈ 0.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_density: Option<f64>,
    /// Extension, with `capture_attention` (chosen layers): the heads of `weights`, in
    /// the order asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<usize>>,
    /// Extension, with `capture_attention` (chosen layers): `[head][query][key]`
    /// softmax weights; 0 after the query and, in block-sparse layers, outside the
    /// listed blocks (`listed_blocks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<Vec<Vec<f32>>>>,
    /// Extension, with `capture_attention.format: "f16"` instead of `weights`: the same
    /// weights as little-endian f16, base64; for each head of `heads` in order, for each
    /// query q, keys 0..=q (T(T+1)/2 values a head: the causal triangle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_f16: Option<String>,
    /// Extension, block-sparse layers with `capture_attention`: for each query block of
    /// the text, the key blocks it attends to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_blocks: Option<Vec<Vec<usize>>>,
}

/// Extension: the residual stream after the block.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidualCapture {
    /// Mean over positions of ‖x‖₂.
    pub norm_mean: f32,
    /// Max over positions of ‖x‖₂.
    pub norm_max: f32,
}

/// Present only when `use_moe`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoeCaptureBody {
    /// Share of this forward's token→expert assignments that went to expert i (sums to 1).
    pub expert_usage: Vec<f32>,
    /// E · Σᵢ fᵢ · Pᵢ with fᵢ = `expert_usage[i]` and Pᵢ the mean router probability of
    /// expert i: 1.0 when perfectly balanced, E when everything goes to one expert.
    pub load_balance_loss: f32,
    /// Extension: for each token, the experts it was routed to (most likely first) and
    /// their gate weights as the model combined them (renormalised over the chosen when
    /// the model does so).
    pub routing: Vec<TokenRouting>,
}

/// One token's route through an MoE layer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRouting {
    pub experts: Vec<u32>,
    pub weights: Vec<f32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LayerCaptureBody {
    pub layer_idx: usize,
    pub attention: AttentionCapture,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeCaptureBody>,
    /// Extension.
    pub residual: ResidualCapture,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceCapture {
    /// Seconds.
    pub forward_time: f64,
    /// MB of device buffers the engine holds after the pass.
    pub memory_usage: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CapturedData {
    pub embeddings: EmbeddingCapture,
    pub layers: Vec<LayerCaptureBody>,
    pub performance: PerformanceCapture,
    /// Extension, with `capture_logit_lens`: `[layer][position]` the `top_k` most likely
    /// next tokens of the residual stream after that layer read through the final layer
    /// norm and the LM head (the last layer's last position is `top_predictions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_lens: Option<Vec<Vec<Vec<TopPrediction>>>>,
    /// Extension: for each position but the last, the actual next token of the text,
    /// its log-probability under the model and its rank (0: the model's first choice),
    /// computed on the device (T − 1 entries; −logprob is the per-token loss).
    pub token_logprobs: Vec<NextTokenScore>,
    /// Extension, with `capture_logit_lens`: `[layer][position]` the rank of the actual
    /// next token under that layer's lens (the "correct-token lens"; T − 1 a layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_lens_ranks: Option<Vec<Vec<usize>>>,
}

/// The actual next token at a position: how likely the model found it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextTokenScore {
    pub token_id: u32,
    pub token: String,
    pub logprob: f32,
    /// Tokens the model ranked before it (0: its first choice).
    pub rank: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForwardResponse {
    pub success: bool,
    #[schema(example = "Forward pass complete")]
    pub message: String,
    /// [batch, tokens, vocab_size]
    pub logits_shape: Vec<usize>,
    pub sequence_length: usize,
    pub captured_data: Option<CapturedData>,
    /// Seconds, ≥ 0.
    pub processing_time: f64,
    /// Extension: most likely next tokens after the last position, most likely first.
    pub top_predictions: Vec<TopPrediction>,
    /// Extension: the tokens that went through the model, in order.
    pub tokens: Vec<TokenBody>,
}

/// A token of the request's text: id, its text, and the byte range `start .. end` of
/// the request's `text` it came from (a character split over several byte-level tokens
/// gives each of them the character's range).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InitializeResponse {
    pub success: bool,
    #[schema(example = "Model initialized")]
    pub message: String,
    /// The full effective config (all keys, defaults filled).
    pub config: ModelConfig,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub total_parameters: usize,
    /// Bytes of parameters / 2^20.
    pub model_size_mb: f64,
    /// Device buffers held by the engine, MiB.
    pub device_memory_mb: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceStats {
    pub total_inferences: u64,
    pub average_inference_time: f64,
    pub last_inference_time: f64,
    /// Extension: tokens through the model since start.
    pub total_tokens: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub initialized: bool,
    /// `"<backend>:<adapter name>"` of the adapter the model runs on, or null.
    pub device: Option<String>,
    pub config: Option<ModelConfig>,
    pub model_info: Option<ModelInfo>,
    pub performance_stats: PerformanceStats,
    /// Extension: the adapter in use.
    pub adapter: Option<AdapterDetails>,
    /// Extension: generations running and the device memory their KV caches hold (MiB).
    pub active_generations: usize,
    pub kv_cache_mb: f64,
    /// Extension: requests accepted that wait for more than a free batch place
    /// (never above `queue_capacity`; running generations are `active_generations`).
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Extension: why the engine looks stuck; absent while it makes progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_stalled: Option<String>,
    /// Extension: continuous batching and the paged KV cache.
    pub batching: BatchingStatus,
}

/// What the scheduler does now (extension of `/status`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchingStatus {
    /// Most generations admitted at once (`--max-batch`); all share each decode step.
    pub max_batch: usize,
    /// Generations in the last decode step (0 when none decodes).
    pub current_batch: usize,
    /// Generations decoding, and prefilling their prompt (in chunks of `prefill_chunk`).
    pub decoding: usize,
    pub prefilling: usize,
    pub prefill_chunk: usize,
    /// Generations accepted and waiting for a batch place or KV pages.
    pub waiting: usize,
    pub decode_steps: u64,
    /// Mean generations per decode step since start.
    pub mean_batch_size: f64,
    /// Mean seconds from accepting a generation to admitting it.
    pub mean_queue_wait_seconds: f64,
    /// Tokens generated per second over the last 10 s, all generations together.
    pub tokens_per_second: f64,
    pub generated_tokens: u64,
    pub kv_pool: KvPoolStatus,
}

/// The paged KV cache of the loaded model.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvPoolStatus {
    pub pages: usize,
    /// Positions per page.
    pub page_positions: usize,
    /// Pages holding some generation's keys and values.
    pub pages_used: usize,
    pub pages_free: usize,
    /// Free pages not promised to admitted generations (a generation is admitted
    /// when its prompt + max_new_tokens fit these).
    pub pages_available: usize,
    pub bytes: u64,
    /// Element type of the keys and values: `float32` or `float16` (the model's
    /// `kv_cache_dtype`).
    pub dtype: &'static str,
    /// Whether the prefix cache is on (`--no-prefix-cache` turns it off).
    pub prefix_cache: bool,
    /// Pages in the prefix cache: full prompt pages kept for later prompts that start
    /// alike (those nobody holds count as free).
    pub pages_cached: usize,
    /// Prompt tokens of the generations admitted with this model, and of those the
    /// ones found in the prefix cache (not prefilled again).
    pub prompt_tokens: u64,
    pub prefix_cache_hit_tokens: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCheck {
    /// healthy, not_initialized or unhealthy (device lost, engine stalled).
    pub status: String,
    pub initialized: bool,
    pub device: Option<String>,
    /// Extension: why the engine looks stuck (work past its deadline, or a loop that
    /// stopped turning); absent while it makes progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_stalled: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryCheck {
    /// healthy, degraded or unhealthy.
    pub status: String,
    pub used_mb: f64,
    pub available_mb: f64,
    pub usage_percent: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiskCheck {
    /// healthy, degraded or unhealthy.
    pub status: String,
    pub used_gb: f64,
    pub available_gb: f64,
    pub usage_percent: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthChecks {
    pub model: ModelCheck,
    pub memory: MemoryCheck,
    pub disk: DiskCheck,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// healthy, degraded or unhealthy (503).
    pub status: String,
    pub timestamp: String,
    pub version: String,
    pub checks: HealthChecks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PingResponse {
    #[schema(example = "PONG")]
    pub message: String,
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    pub ready: bool,
    pub detail: String,
    pub timestamp: String,
}
