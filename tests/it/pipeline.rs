//! Decode steps in flight: a step submitted without waiting (`Model::decode_submit`)
//! and the next one chained to it before its tokens are read (`Model::decode_chain`,
//! the ids the device picked copied in queue order) give the tokens of steps run one
//! at a time; misuse is refused with an error and leaves the model serving.

use crate::common;

use common::gpu;
use wgformer::model::kv_pool::SeqKv;
use wgformer::model::sampling::{Sampler, SamplingParams};
use wgformer::model::{Model, NextToken, Readback};

fn small_model(kernels: &str) -> Model {
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 64, "n_layer": 2, "n_head": 2, "n_embed": 64,
        "seed": 21, "kernels": kernels,
    }))
    .unwrap();
    Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap()
}

/// Rows 0 and 3 greedy, the others sampled with their own settings and seeds.
fn samplers() -> Vec<Option<Sampler>> {
    (0..4)
        .map(|i| {
            (i % 3 != 0).then(|| {
                Sampler::new(SamplingParams {
                    temperature: [1.0, 0.8, 1.2, 1.0][i],
                    top_k: [0, 20, 0, 0][i],
                    top_p: [1.0, 1.0, 0.9, 1.0][i],
                    seed: 40 + i as u64,
                    ..Default::default()
                })
            })
        })
        .collect()
}

/// What each row reads back for its token number `n`.
fn asks(samplers: &[Option<Sampler>], n: u64) -> Vec<Readback> {
    samplers
        .iter()
        .map(|s| match s {
            Some(s) => Readback::Sample(s.draw(n).into()),
            None => Readback::Argmax,
        })
        .collect()
}

fn ids(tokens: Vec<NextToken>) -> Vec<u32> {
    tokens
        .into_iter()
        .map(|t| match t {
            NextToken::Argmax(id) | NextToken::Sampled(id) => id,
            NextToken::Logits(_) => panic!("ids asked, logits read"),
        })
        .collect()
}

/// Four generations with prompts of different lengths, prefilled.
/// Rows of `kvs` with the first tokens.
fn pairs(kvs: &mut [SeqKv]) -> Vec<(&mut SeqKv, u32)> {
    kvs.iter_mut().zip(FIRST).collect()
}

fn prefilled(model: &Model) -> Vec<SeqKv> {
    (0..4)
        .map(|i| {
            let mut kv = model.kv_reserve(40).unwrap().unwrap();
            let prompt: Vec<u32> = (0..2 + 3 * i as u32).map(|j| (j * 37 + 11) % 300).collect();
            model.prefill(&mut kv, &prompt, false).unwrap();
            kv
        })
        .collect()
}

const FIRST: [u32; 4] = [5, 17, 250, 42];
const STEPS: u64 = 12;

/// Each row's tokens, one step at a time (submit, wait).
fn one_at_a_time(model: &Model) -> Vec<Vec<u32>> {
    let s = samplers();
    let mut kvs = prefilled(model);
    let mut out = vec![Vec::new(); 4];
    decode_apart(model, &mut kvs, FIRST.to_vec(), &s, 0..STEPS, &mut out);
    out
}

/// Decode steps `steps` of `kvs` from the tokens `next`, each waited for, every row's
/// tokens pushed to its `out`.
fn decode_apart(
    model: &Model,
    kvs: &mut [SeqKv],
    mut next: Vec<u32>,
    s: &[Option<Sampler>],
    steps: std::ops::Range<u64>,
    out: &mut [Vec<u32>],
) {
    let s = &s[..kvs.len()];
    for n in steps {
        let mut rows: Vec<_> = kvs
            .iter_mut()
            .zip(&next)
            .map(|(kv, &id)| (kv, id))
            .collect();
        next = ids(model.decode_select(&mut rows, &asks(s, n)).unwrap());
        out.iter_mut().zip(&next).for_each(|(o, &id)| o.push(id));
    }
}

/// The same, each step chained to the one before it while that one is in flight.
fn chained(model: &Model) -> Vec<Vec<u32>> {
    let s = samplers();
    let mut kvs = prefilled(model);
    let mut rows: Vec<_> = pairs(&mut kvs);
    let flight = model.decode_submit(&mut rows, &asks(&s, 0)).unwrap();
    chain_from(model, &mut kvs, &s, flight, 1)
}

/// Each row's tokens from `flight` (a step in flight for `kvs`) and the steps chained
/// to it, the first of them step `first`, up to [`STEPS`] steps.
fn chain_from(
    model: &Model,
    kvs: &mut [SeqKv],
    s: &[Option<Sampler>],
    mut flight: wgformer::model::PendingStep,
    first: u64,
) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); kvs.len()];
    for n in first..=STEPS {
        let ahead = (n < STEPS).then(|| {
            let mut kvs: Vec<&mut SeqKv> = kvs.iter_mut().collect();
            model.decode_chain(&mut kvs, &asks(s, n), &flight).unwrap()
        });
        let got = ids(model.decode_wait(flight).unwrap());
        out.iter_mut().zip(&got).for_each(|(o, &id)| o.push(id));
        match ahead {
            Some(a) => flight = a,
            None => break,
        }
    }
    out
}

#[test]
fn chained_decode_steps_give_the_tokens_of_steps_run_one_at_a_time() {
    let model = small_model("hardware");
    let want = one_at_a_time(&model);
    assert_eq!(want[0].len(), STEPS as usize);
    // a greedy row and the sampled ones do not repeat one token (the chain would
    // then prove little; a random model's greedy row may, as row 3 does)
    assert!(
        want[..3].iter().all(|r| r.iter().any(|&t| t != r[0])),
        "{want:?}"
    );
    assert_eq!(chained(&model), want);
    // the host's steps were counted, waits included
    let t = *model.host_times.lock().unwrap();
    assert!(t.steps >= 2 * STEPS && t.wait_s > 0.0, "{t:?}");
}

#[test]
fn a_decode_step_in_flight_refuses_misuse_and_the_model_serves_on() {
    let model = small_model("hardware");
    let s = samplers();
    let mut kvs = prefilled(&model);
    let (a, b) = kvs.split_at_mut(2);
    let mut rows: Vec<_> = pairs(a);
    let first = model.decode_submit(&mut rows, &asks(&s[..2], 0)).unwrap();
    assert_eq!(first.rows(), 2);
    // logits cannot come back from a step in flight
    let err = model
        .decode_submit(&mut pairs(b), &[Readback::Logits, Readback::Argmax])
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    // a chain takes the rows of the step before it, no more and no fewer
    let mut three: Vec<&mut SeqKv> = a.iter_mut().chain(b.iter_mut().take(1)).collect();
    let err = model
        .decode_chain(&mut three, &asks(&s[..3], 1), &first)
        .unwrap_err();
    assert!(err.to_string().contains("2 rows"), "{err}");
    // a second step in flight, then a third is refused
    let second = model
        .decode_submit(&mut pairs(b), &asks(&s[2..], 0))
        .unwrap();
    let err = model
        .decode_submit(&mut pairs(b), &asks(&s[2..], 1))
        .unwrap_err();
    assert!(err.to_string().contains("in flight"), "{err}");
    // `first` is no longer the model's last step: chaining to it would take the ids
    // `second` drew
    let mut pair: Vec<&mut SeqKv> = a.iter_mut().collect();
    let err = model
        .decode_chain(&mut pair, &asks(&s[..2], 1), &first)
        .unwrap_err();
    assert!(err.to_string().contains("last generation step"), "{err}");
    // both read back, and the model serves a step as before
    assert_eq!(model.decode_wait(first).unwrap().len(), 2);
    assert_eq!(model.decode_wait(second).unwrap().len(), 2);
    let mut rows: Vec<_> = pairs(&mut kvs);
    let got = model.decode_select(&mut rows, &asks(&s, 1)).unwrap();
    assert_eq!(got.len(), 4);
    // a model that cannot draw (its logits in more bindings than the kernel reads)
    // is the only other refusal; the software class draws as well
    let soft = small_model("software");
    let mut kvs = prefilled(&soft);
    let mut rows: Vec<_> = pairs(&mut kvs);
    let p = soft.decode_submit(&mut rows, &asks(&s, 0)).unwrap();
    assert_eq!(soft.decode_wait(p).unwrap().len(), 4);
}

/// The prompt of the fourth generation of [`prefilled`], its rows joining the other
/// three's decode steps.
fn joiner_prompt() -> Vec<u32> {
    (0..11).map(|j| (j * 37 + 11) % 300).collect()
}

/// Three generations of [`prefilled`] and a fourth's empty sequence.
fn three_and_a_joiner(model: &Model) -> Vec<SeqKv> {
    let mut kvs = prefilled(model);
    kvs.truncate(3);
    kvs.push(model.kv_reserve(40).unwrap().unwrap());
    kvs
}

/// Each row's tokens, every step waited for: the three's decode steps `0 .. join`, the
/// fourth's prompt ([`joiner_prompt`]) prefilled alone beside the last of them, then
/// decode steps of all four up to [`STEPS`].
fn joined_apart(model: &Model, s: &[Option<Sampler>], join: u64) -> Vec<Vec<u32>> {
    let mut kvs = three_and_a_joiner(model);
    let mut want = vec![Vec::new(); 4];
    decode_apart(
        model,
        &mut kvs[..3],
        FIRST[..3].to_vec(),
        s,
        0..join,
        &mut want,
    );
    let prompt = joiner_prompt();
    let first = model
        .prefill_select(&mut [(&mut kvs[3], &prompt, Some(Readback::Argmax))])
        .unwrap();
    want[3].extend(ids(vec![first.into_iter().next().unwrap().unwrap()]));
    let next: Vec<u32> = want.iter().map(|w| *w.last().unwrap()).collect();
    decode_apart(model, &mut kvs, next, s, join..STEPS, &mut want);
    want
}

/// The first three of `kvs` decoding their [`FIRST`] tokens and the fourth's prompt
/// ([`joiner_prompt`], reading back `ask`) in one mixed step left in flight.
fn join_in_flight(
    model: &Model,
    kvs: &mut [SeqKv],
    s: &[Option<Sampler>],
    ask: Readback,
) -> wgformer::Result<wgformer::model::PendingStep> {
    let prompt = joiner_prompt();
    let (three, last) = kvs.split_at_mut(3);
    let mut rows: Vec<_> = pairs(three);
    let part = (&mut last[0], prompt.as_slice(), Some(ask));
    model.mixed_submit(&mut rows, &asks(&s[..3], 0), &mut [part])
}

#[test]
fn a_mixed_step_in_flight_and_the_steps_chained_to_it_give_the_tokens_of_steps_apart() {
    // A generation joining three running ones: its prompt in their decode step (a mixed
    // step, `Model::mixed_submit`, left in flight) and the next decode steps chained to
    // it (the joiner's first token copied on the device like the others') give the
    // tokens of the prompt prefilled alone and every step waited for.
    let model = small_model("hardware");
    let s = samplers();
    let want = joined_apart(&model, &s, 1);
    // together, in flight
    let mut kvs = three_and_a_joiner(&model);
    let flight = join_in_flight(&model, &mut kvs, &s, Readback::Argmax).unwrap();
    assert_eq!(flight.rows(), 4);
    assert_eq!(chain_from(&model, &mut kvs, &s, flight, 1), want);
    // a row reading its logits cannot stay in flight; the model serves on
    drop(kvs);
    let mut kvs = three_and_a_joiner(&model);
    let e = join_in_flight(&model, &mut kvs, &s, Readback::Logits)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only ids picked on the device"), "{e}");
    let step = join_in_flight(&model, &mut kvs, &s, Readback::Argmax).unwrap();
    let firsts: Vec<u32> = want.iter().map(|w| w[0]).collect();
    assert_eq!(ids(model.decode_wait(step).unwrap()), firsts);
}

#[test]
fn a_joiner_chained_to_the_step_in_flight_gives_the_tokens_of_steps_apart() {
    // The batch's decode step in flight, and a prompt joining it in the next one, a
    // mixed step chained to it (`Model::mixed_chain`: the three rows' ids copied on
    // the device, the prompt's from the host), then decode steps chained in turn: the
    // tokens of every step waited for, the prompt prefilled alone beside the second.
    let model = small_model("hardware");
    let s = samplers();
    let prompt = joiner_prompt();
    let want = joined_apart(&model, &s, 2);
    let mut kvs = three_and_a_joiner(&model);
    let mut got = vec![Vec::new(); 4];
    let mut rows: Vec<_> = pairs(&mut kvs[..3]);
    let flight = model.decode_submit(&mut rows, &asks(&s[..3], 0)).unwrap();
    let (three, last) = kvs.split_at_mut(3);
    let mut three: Vec<&mut SeqKv> = three.iter_mut().collect();
    let part = (&mut last[0], prompt.as_slice(), Some(Readback::Argmax));
    let joined = model
        .mixed_chain(&mut three, &asks(&s[..3], 1), &mut [part], &flight)
        .unwrap();
    let step0 = ids(model.decode_wait(flight).unwrap());
    got.iter_mut().zip(&step0).for_each(|(o, &id)| o.push(id));
    for (g, rest) in got
        .iter_mut()
        .zip(chain_from(&model, &mut kvs, &s, joined, 2))
    {
        g.extend(rest);
    }
    assert_eq!(got, want);
    assert_eq!(got[3].len(), STEPS as usize - 1);
}
