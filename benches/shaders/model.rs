//! Model-step rows: GPT-2 small's forward, prefill, decode (alone and batched),
//! shared forwards, kernel-by-kernel profiles of a traversal, and MoE against a dense
//! model with the same active parameters.

use std::time::Instant;

use crate::harness::*;
use wgformer::config::{DeviceChoice, ModelConfig};
use wgformer::gpu::GpuContext;
use wgformer::kernels::Pipelines;
use wgformer::model::Model;

/// How a batched decode step's tokens are picked: greedy from the logits read back,
/// the device's argmax, the host's sampler over the logits read back, the device's
/// draw; or the device's argmax with each step chained to the one before while it
/// runs (`Model::decode_chain`, as the engine steps a batch that goes on).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pick {
    HostGreedy,
    DeviceArgmax,
    HostSample,
    DeviceSample,
    Chained,
}

impl Bench {
    /// Prefill a `prompt`-token prompt into a KV cache, then `steps` greedy one-token steps.
    pub(crate) fn decode(&mut self, model: &Model, prompt: usize, steps: usize, tag: &str) {
        let name = model_name(model);
        let ids = token_texts(1, prompt, 13, 0).remove(0);
        // the pool's pages are zeroed by wgpu on their first use: once per model, not
        // per request, so outside the timing
        let mut warm = model.kv_reserve(prompt).unwrap().unwrap();
        model.prefill(&mut warm, &ids, true).unwrap();
        drop(warm);
        let mut session = model.kv_reserve(prompt + steps + 1).unwrap().unwrap();
        let t0 = Instant::now();
        let mut logits = model.extend(&mut session, &ids).unwrap();
        let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut step_ms = Vec::with_capacity(steps);
        let host0 = host_times(model);
        for _ in 0..steps {
            let next = wgformer::model::sampling::argmax(&logits);
            let t = Instant::now();
            logits = model.extend(&mut session, &[next]).unwrap();
            step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(step_ms);
        let host = host_line(model, &host0);
        let before = wgformer::gpu::dispatch_count();
        let next = wgformer::model::sampling::argmax(&logits);
        model.extend(&mut session, &[next]).unwrap();
        let dispatches = wgformer::gpu::dispatch_count() - before;
        self.report(
            "gpt2_prefill",
            format!("{name}{tag} T={prompt}"),
            prefill_ms,
            2.0 * prompt as f64 * model.parameter_count as f64,
            "GFLOP/s",
            None,
            "",
        );
        if !self.json {
            println!(
                "{:<26} {:<26} {:10.3} ms/token {:7.2} tokens/s  {dispatches} dispatches/step, {host}",
                "gpt2_decode",
                format!("{name}{tag} at {prompt}..{}", prompt + steps),
                ms,
                1e3 / ms
            );
        }
        self.rows.push(Row {
            kernel: "gpt2_decode".into(),
            shape: format!("{name}{tag} at {prompt}..{}", prompt + steps),
            gpu_ms: ms,
            rate: 1e3 / ms,
            unit: "tokens/s",
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: None,
        });
    }

    /// `b` generations of `prompt` tokens each, then `steps` batched decode steps (each
    /// generation one token a step) picking as `pick` says; tokens/s of all together,
    /// and the ratio to one.
    pub(crate) fn decode_batch(
        &mut self,
        model: &Model,
        b: usize,
        prompt: usize,
        steps: usize,
        pick: Pick,
        tag: &str,
    ) {
        let name = model_name(model);
        if matches!(pick, Pick::DeviceSample | Pick::Chained) && !model.can_draw() {
            if !self.json {
                println!(
                    "{:<26} {name}{tag} B={b}: no draw on the device (the logits span several bindings)",
                    "gpt2_decode_batch"
                );
            }
            return;
        }
        use wgformer::model::{sampling, NextToken, Readback};
        let sampler = sampling::Sampler::new(sampling::SamplingParams {
            seed: 7,
            ..Default::default()
        });
        let mut seqs: Vec<_> = (0..b)
            .map(|_| model.kv_reserve(prompt + steps + 1).unwrap().unwrap())
            .collect();
        let mut next = Vec::with_capacity(b);
        for (kv, ids) in seqs.iter_mut().zip(token_texts(b, prompt, 13, 101)) {
            let logits = model.prefill(kv, &ids, true).unwrap().unwrap();
            next.push(sampling::argmax(&logits));
        }
        let mut step_ms = Vec::with_capacity(steps);
        let host0 = host_times(model);
        if pick == Pick::Chained {
            // the time between two steps' tokens coming back: the step, with the host's
            // work hidden behind the device's
            let want = vec![Readback::Argmax; b];
            let mut rows: Vec<_> = seqs
                .iter_mut()
                .zip(&next)
                .map(|(kv, &id)| (kv, id))
                .collect();
            let mut flight = model.decode_submit(&mut rows, &want).unwrap();
            let mut t = Instant::now();
            for s in 1..=steps {
                let ahead = (s < steps).then(|| {
                    let mut kvs: Vec<_> = seqs.iter_mut().collect();
                    model.decode_chain(&mut kvs, &want, &flight).unwrap()
                });
                model.decode_wait(flight).unwrap();
                step_ms.push(t.elapsed().as_secs_f64() * 1e3);
                t = Instant::now();
                match ahead {
                    Some(a) => flight = a,
                    None => break,
                }
            }
        }
        for s in (0..steps).filter(|_| pick != Pick::Chained) {
            let want = vec![
                match pick {
                    Pick::HostGreedy | Pick::HostSample => Readback::Logits,
                    Pick::DeviceArgmax | Pick::Chained => Readback::Argmax,
                    Pick::DeviceSample => Readback::Sample(sampler.draw(s as u64).into()),
                };
                b
            ];
            let mut rows: Vec<_> = seqs
                .iter_mut()
                .zip(&next)
                .map(|(kv, &id)| (kv, id))
                .collect();
            // the step and the host's part of picking the tokens
            let t = Instant::now();
            next = model
                .decode_select(&mut rows, &want)
                .unwrap()
                .into_iter()
                .map(|n| match n {
                    NextToken::Logits(l) if pick == Pick::HostSample => {
                        sampler.sample(&l, s as u64)
                    }
                    NextToken::Logits(l) => sampling::argmax(&l),
                    NextToken::Argmax(id) | NextToken::Sampled(id) => id,
                })
                .collect();
            step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(step_ms);
        let rate = b as f64 * 1e3 / ms;
        let host = host_line(model, &host0);
        let one = self
            .rows
            .iter()
            .rev()
            .find(|r| r.kernel == "gpt2_decode" && r.shape.contains(&format!("small{tag} at")))
            .map(|r| r.rate);
        let how = match pick {
            Pick::HostGreedy => "",
            Pick::DeviceArgmax => " argmax",
            Pick::HostSample => " sampled on host",
            Pick::DeviceSample => " sampled on device",
            Pick::Chained => " argmax, chained",
        };
        let shape = format!("{name}{tag} B={b}{how} at {prompt}..{}", prompt + steps);
        if !self.json {
            println!(
                "{:<26} {:<26} {:10.3} ms/step  {:7.2} tokens/s  {}, {host}",
                "gpt2_decode_batch",
                shape,
                ms,
                rate,
                one.map_or(String::new(), |o| format!(
                    "{:.2}x one generation",
                    rate / o
                ))
            );
        }
        self.rows.push(Row {
            kernel: "gpt2_decode_batch".into(),
            shape,
            gpu_ms: ms,
            rate,
            unit: "tokens/s",
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: one.map(|o| rate / o),
        });
    }

    /// `n` prompts of `t` tokens each prefilled into fresh sequences (the first token
    /// picked by the device): one after the other, then all in one traversal
    /// (`Model::prefill_select`, as the engine takes prompts arriving together); ms of
    /// each, and the ratio.
    pub(crate) fn prefill_batch(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        let name = model_name(model);
        use wgformer::model::Readback;
        let texts = token_texts(n, t, 29, 131);
        let run = |together: bool| {
            let mut seqs: Vec<_> = (0..n)
                .map(|_| model.kv_reserve(t).unwrap().unwrap())
                .collect();
            let t0 = Instant::now();
            if together {
                let mut parts: Vec<_> = seqs
                    .iter_mut()
                    .zip(&texts)
                    .map(|(kv, ids)| (kv, ids.as_slice(), Some(Readback::Argmax)))
                    .collect();
                model.prefill_select(&mut parts).unwrap();
            } else {
                for (kv, ids) in seqs.iter_mut().zip(&texts) {
                    model
                        .prefill_select(&mut [(kv, ids.as_slice(), Some(Readback::Argmax))])
                        .unwrap();
                }
            }
            t0.elapsed().as_secs_f64() * 1e3
        };
        run(true);
        let runs = if self.quick { 3 } else { 5 };
        let apart = median((0..runs).map(|_| run(false)).collect());
        let together = median((0..runs).map(|_| run(true)).collect());
        let shape = format!("{name}{tag} {n} x T={t}");
        self.report_together("gpt2_prefill_batch", shape, n, "prompts/s", apart, together);
    }

    /// A generation joining `b` running ones (at 64 positions) with a prompt of `t`
    /// tokens: its prefill step then their decode step, against one mixed step of
    /// both (`Model::mixed_select`, as the engine takes a short prompt); ms of each
    /// (medians), and the ratio. Models whose steps cannot mix print a line.
    pub(crate) fn join_batch(&mut self, model: &Model, b: usize, t: usize, tag: &str) {
        use wgformer::model::Readback::Argmax;
        let name = model_name(model);
        if model
            .mixed_rows()
            .is_none_or(|m| t > m.prompt || b + t > m.total)
        {
            if !self.json {
                println!(
                    "{:<26} {name}{tag} B={b} + T={t}: no mixed step",
                    "gpt2_join"
                );
            }
            return;
        }
        let runs = if self.quick { 3 } else { 5 };
        let (prompt, rounds) = (64, 2 * runs + 2);
        let mut seqs: Vec<_> = (0..b)
            .map(|_| model.kv_reserve(prompt + rounds).unwrap().unwrap())
            .collect();
        for (kv, ids) in seqs.iter_mut().zip(token_texts(b, prompt, 13, 101)) {
            model.prefill(kv, &ids, false).unwrap();
        }
        let text = &token_texts(1, t, 29, 131)[0];
        let want = vec![Argmax; b];
        let mut join = |mixed: bool| {
            let mut joiner = model.kv_reserve(t).unwrap().unwrap();
            let mut rows: Vec<_> = seqs.iter_mut().map(|kv| (kv, 464u32)).collect();
            let part = (&mut joiner, text.as_slice(), Some(Argmax));
            let t0 = Instant::now();
            if mixed {
                model.mixed_select(&mut rows, &want, &mut [part]).unwrap();
            } else {
                model.prefill_select(&mut [part]).unwrap();
                model.decode_select(&mut rows, &want).unwrap();
            }
            t0.elapsed().as_secs_f64() * 1e3
        };
        join(false);
        join(true);
        let (mut apart, mut together) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            apart.push(join(false));
            together.push(join(true));
        }
        let shape = format!("{name}{tag} B={b} + T={t}");
        let (apart, together) = (median(apart), median(together));
        self.report_together("gpt2_join", shape, b + 1, "tokens/s", apart, together);
    }

    /// Where one traversal's time goes on this device, kernel by kernel (timestamps
    /// around every dispatch, `gpu::profile`): a decode step of 1 and of `b` rows at
    /// 64 positions (reading back what the engine would: the device's argmax where the
    /// model picks greedy tokens there), one prefill traversal of `b` prompts of 34
    /// tokens (the shape of `conc.py`'s prompts) and one of a chunk of 128 rows (the
    /// matmul path with any kernels). Prints each traversal's total and its
    /// 12 largest kernels (kernel, `ROWS`, grid, dispatches, ms, share).
    pub(crate) fn profile_steps(&mut self, model: &Model, b: usize, tag: &str) {
        let name = model_name(model);
        use wgformer::gpu::profile;
        use wgformer::model::Readback;
        let ctx = model.ctx.clone();
        if !profile::available(&ctx) {
            if !self.json {
                println!("gpt2_profile: the adapter has no timestamps inside passes");
            }
            return;
        }
        let want = if model.argmax_on_device {
            Readback::Argmax
        } else {
            Readback::Logits
        };
        let (prompt, steps) = (64, 3);
        let mut runs = Vec::new();
        for rows in [1, b] {
            let mut seqs: Vec<_> = (0..rows)
                .map(|_| model.kv_reserve(prompt + steps).unwrap().unwrap())
                .collect();
            for (kv, ids) in seqs.iter_mut().zip(token_texts(rows, prompt, 13, 101)) {
                model.prefill(kv, &ids, true).unwrap();
            }
            let mut last = None;
            // the last of a few steps (the first ones warm the pool's pages)
            for _ in 0..steps {
                let mut batch: Vec<_> = seqs.iter_mut().map(|kv| (kv, 464u32)).collect();
                let wants = vec![want; rows];
                let (_, p) =
                    profile::profile(&ctx, || model.decode_select(&mut batch, &wants)).unwrap();
                last = Some(p);
            }
            runs.push((format!("decode B={rows} at {prompt}"), last.unwrap()));
        }
        // b short prompts arriving together (a burst), and one long chunk
        for (prompts, len) in [(b, 34), (1, 128)] {
            let texts = token_texts(prompts, len, 29, 131);
            let mut last = None;
            for _ in 0..2 {
                let mut seqs: Vec<_> = (0..prompts)
                    .map(|_| model.kv_reserve(len).unwrap().unwrap())
                    .collect();
                let mut parts: Vec<_> = seqs
                    .iter_mut()
                    .zip(&texts)
                    .map(|(kv, ids)| (kv, ids.as_slice(), Some(Readback::Argmax)))
                    .collect();
                let (_, p) = profile::profile(&ctx, || model.prefill_select(&mut parts)).unwrap();
                last = Some(p);
            }
            runs.push((format!("prefill {prompts} x T={len}"), last.unwrap()));
        }
        for (what, p) in runs {
            let total = p.total_ms();
            let shape = format!("{name}{tag} {what}");
            if !self.json {
                println!(
                    "{:<26} {:<30} {:10.3} ms in {} dispatches{}",
                    "gpt2_profile",
                    shape,
                    total,
                    p.dispatches.len(),
                    if p.unrecorded > 0 {
                        format!(" ({} more not timed)", p.unrecorded)
                    } else {
                        String::new()
                    }
                );
            }
            self.rows.push(Row {
                kernel: "gpt2_profile".into(),
                shape: format!("{shape}: all kernels"),
                gpu_ms: total,
                rate: p.dispatches.len() as f64,
                unit: "dispatches",
                cpu_ms: None,
                cpu: "",
                speedup_vs_cpu: None,
            });
            for k in p.by_kernel().into_iter().take(12) {
                let kernel = format!(
                    "{} R{} {}x{}x{} ({}x)",
                    k.kernel, k.rows, k.groups.0, k.groups.1, k.groups.2, k.count
                );
                if !self.json {
                    println!(
                        "    {kernel:<52} {:9.3} ms {:5.1} %",
                        k.ms,
                        100.0 * k.ms / total.max(1e-9)
                    );
                }
                self.rows.push(Row {
                    kernel: "gpt2_profile".into(),
                    shape: format!("{shape}: {kernel}"),
                    gpu_ms: k.ms,
                    rate: k.ms / total.max(1e-9),
                    unit: "share",
                    cpu_ms: None,
                    cpu: "",
                    speedup_vs_cpu: None,
                });
            }
        }
    }

    /// Print and record `n` items taking `apart` ms one by one and `together` ms in
    /// one go: the rate together, and the ratio.
    pub(crate) fn report_together(
        &mut self,
        kernel: &str,
        shape: String,
        n: usize,
        unit: &'static str,
        apart: f64,
        together: f64,
    ) {
        let labels = ("one by one", "together");
        self.report_pair(kernel, shape, n, unit, labels, (apart, together));
    }

    /// Print and record `n` items taking `apart` ms one way and `together` ms the way
    /// measured (`labels` name the two): the rate of the second, and the ratio.
    pub(crate) fn report_pair(
        &mut self,
        kernel: &str,
        shape: String,
        n: usize,
        unit: &'static str,
        (first, second): (&str, &str),
        (apart, together): (f64, f64),
    ) {
        if !self.json {
            println!(
                "{kernel:<26} {shape:<26} {apart:10.3} ms {first}, {together:.3} ms {second}: {:.2}x {unit}",
                apart / together
            );
        }
        self.rows.push(Row {
            kernel: kernel.into(),
            shape,
            gpu_ms: together,
            rate: n as f64 * 1e3 / together,
            unit,
            cpu_ms: None,
            cpu: "",
            speedup_vs_cpu: Some(apart / together),
        });
    }

    /// `n` forwards of `t` tokens each (no statistics): one after the other, then all in
    /// one shared traversal (`Model::forward_many`); forwards/s of each, and the ratio.
    pub(crate) fn forwards_shared(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        let name = model_name(model);
        let texts = token_texts(n, t, 13, 101);
        let batch: Vec<(&[u32], usize)> = texts.iter().map(|ids| (ids.as_slice(), 5)).collect();
        model.forward_many(&batch).unwrap();
        let runs = if self.quick { 3 } else { 5 };
        let apart = median(
            (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    for ids in &texts {
                        model.forward(ids, 5, false).unwrap();
                    }
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let together = median(
            (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    model.forward_many(&batch).unwrap();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let shape = format!("{name}{tag} {n} x T={t}");
        self.report_together("gpt2_fwd_shared", shape, n, "forwards/s", apart, together);
    }

    /// The median ms of `f` over the bench's runs (3 quick, else 5).
    fn median_ms(&self, f: &dyn Fn()) -> f64 {
        let runs = if self.quick { 3 } else { 5 };
        median(
            (0..runs)
                .map(|_| {
                    let t0 = Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    }

    /// `n` texts of `t` tokens in one shared traversal: with the LM head over each last
    /// row (`Model::forward_many`), then without it, each last hidden state read back
    /// (`Model::embed_many`, `/v1/embeddings`); texts/s of each, and the ratio.
    pub(crate) fn embeddings(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        let name = model_name(model);
        let texts = token_texts(n, t, 13, 211);
        let with_head: Vec<(&[u32], usize)> = texts.iter().map(|ids| (ids.as_slice(), 5)).collect();
        let batch: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        model.embed_many(&batch).unwrap();
        let head = self.median_ms(&|| {
            model.forward_many(&with_head).unwrap();
        });
        let embed = self.median_ms(&|| {
            model.embed_many(&batch).unwrap();
        });
        let shape = format!("{name}{tag} {n} x T={t}");
        let labels = ("with the LM head", "without (embeddings)");
        self.report_pair("gpt2_embed", shape, n, "texts/s", labels, (head, embed));
    }

    /// An encoder's embeddings of `n` texts of `t` tokens (`Model::embed_many`, what
    /// `/v1/embeddings` runs): one text a traversal, then as many as the engine puts in
    /// one (16, and the context's tokens); texts/s of each, and the ratio.
    pub(crate) fn encoder_embeddings(&mut self, model: &Model, n: usize, t: usize, tag: &str) {
        let vocab = model.config.vocab_size as u32;
        let texts: Vec<Vec<u32>> = token_texts(n, t, 13, 307)
            .into_iter()
            .map(|ids| ids.into_iter().map(|x| x % vocab).collect())
            .collect();
        let batch: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        // as the engine groups them: up to 16 texts and the context's tokens
        let per = (model.config.context_size / t).clamp(1, 16);
        model.embed_many(&batch[..per]).unwrap();
        let apart = self.median_ms(&|| {
            for ids in &batch {
                model.embed_many(&[ids]).unwrap();
            }
        });
        let together = self.median_ms(&|| {
            for group in batch.chunks(per) {
                model.embed_many(group).unwrap();
            }
        });
        let shape = format!("MiniLM-L6{tag} {n} x T={t}");
        let shared = format!("{per} a traversal");
        let labels = ("one a traversal", shared.as_str());
        self.report_pair(
            "encoder_embed",
            shape,
            n,
            "texts/s",
            labels,
            (apart, together),
        );
    }

    pub(crate) fn end_to_end(&mut self, model: &Model, t: usize, tag: &str) {
        let name = model_name(model);
        let ids = token_texts(1, t, 13, 0).remove(0);
        model.forward(&ids, 5, false).unwrap();
        let runs = if self.quick { 3 } else { 5 };
        let ms = median(
            (0..runs)
                .map(|_| model.forward(&ids, 5, false).unwrap().seconds * 1e3)
                .collect(),
        );
        let flops = 2.0 * t as f64 * model.parameter_count as f64;
        let before = wgformer::gpu::dispatch_count();
        model.forward(&ids, 5, false).unwrap();
        if !self.json {
            println!(
                "{:<26} {:<26} {} dispatches",
                "gpt2_fwd",
                format!("{name}{tag} T={t}"),
                wgformer::gpu::dispatch_count() - before
            );
        }
        self.report(
            "gpt2_fwd",
            format!("{name}{tag} T={t}"),
            ms,
            flops,
            "GFLOP/s",
            None,
            "",
        );
    }
}

fn host_times(model: &Model) -> wgformer::model::HostTimes {
    *model.host_times.lock().unwrap()
}

/// The host's share of the steps since `before`: recording and submitting a step's
/// dispatches (per step), against the wait for the device and the read-back.
fn host_line(model: &Model, before: &wgformer::model::HostTimes) -> String {
    let t = host_times(model).since(before);
    let n = t.steps.max(1) as f64;
    format!(
        "host {:.0}% (record {:.3} ms, submit {:.3} ms, wait {:.3} ms a step)",
        100.0 * t.host_share(),
        1e3 * t.record_s / n,
        1e3 * t.submit_s / n,
        1e3 * t.wait_s / n
    )
}

/// How the rows name a model: GPT-2 small, or its family and shape.
fn model_name(model: &Model) -> String {
    let c = &model.config;
    if c.architecture.llama_like() {
        let arch = serde_json::to_value(c.architecture).unwrap_or_default();
        // heads wider than 128 named (the attention kernels' wide pipelines)
        let wide = c.head_size() > 128;
        format!(
            "{} {}x{}{}",
            arch.as_str().unwrap_or("llama"),
            c.n_embed,
            c.n_layer,
            if wide {
                format!(" heads {}x{}", c.n_head, c.head_size())
            } else {
                String::new()
            }
        )
    } else {
        "GPT-2 small".into()
    }
}

/// GPT-2 small in f32 and f16: forwards at T = 16 and 128, shared forwards, a batched
/// prefill, decode alone and in batches of 4, 8 and 16 (greedy and sampled).
pub(crate) fn gpt2_fwd(b: &mut Bench, device: &DeviceChoice) {
    each_gpt2_small(b, device, |b, model, tag| {
        for t in [16, 128] {
            b.end_to_end(model, t, tag);
        }
        b.forwards_shared(model, 8, 16, tag);
        b.embeddings(model, 16, 32, tag);
        b.prefill_batch(model, 8, 32, tag);
        b.decode(model, 64, 64, tag);
        for n in [4, 8, 16] {
            b.decode_batch(model, n, 64, 16, Pick::HostGreedy, tag);
        }
        for n in [8, 16] {
            b.decode_batch(model, n, 64, 16, Pick::DeviceArgmax, tag);
        }
        // steps chained while the one before runs (the engine's way with a batch that
        // goes on): one generation, and 16
        for n in [1, 16] {
            b.decode_batch(model, n, 64, 16, Pick::Chained, tag);
        }
        // sampled rows (top_k 50, temperature 1): the host's sampler over logits read
        // back, against the device's draw reading back ids
        for pick in [Pick::HostSample, Pick::DeviceSample] {
            b.decode_batch(model, 16, 64, 16, pick, tag);
        }
    });
}

/// A seeded encoder of all-MiniLM-L6-v2's shape (6 layers of 384, 12 heads, GELU 1536,
/// vocabulary 30,522, 512 positions), f32 and f16: 32 short texts (T = 16) and 16 long
/// ones (T = 256), embedded one a traversal and 16 a traversal.
pub(crate) fn encoder_embed(b: &mut Bench, device: &DeviceChoice) {
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    for (dtype, tag) in [
        (wgformer::config::Dtype::Float32, ""),
        (wgformer::config::Dtype::Float16, " f16"),
    ] {
        let cfg = ModelConfig {
            architecture: wgformer::config::Family::Bert,
            n_layer: 6,
            n_head: 12,
            n_embed: 384,
            intermediate_size: Some(1536),
            vocab_size: 30522,
            context_size: 512,
            dtype,
            ..ModelConfig::default()
        };
        let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("encoder");
        b.encoder_embeddings(&model, 32, 16, tag);
        b.encoder_embeddings(&model, 16, 256, tag);
    }
}

/// GPT-2 small (seeded) on `device`, f32 and then with half-float linear weights (dtype
/// float16), each built in turn and handed to `f` with its rows' tag.
fn each_gpt2_small(
    b: &mut Bench,
    device: &DeviceChoice,
    mut f: impl FnMut(&mut Bench, &Model, &str),
) {
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    for (dtype, tag) in [
        (wgformer::config::Dtype::Float32, ""),
        (wgformer::config::Dtype::Float16, " f16"),
    ] {
        let cfg = ModelConfig {
            dtype,
            ..ModelConfig::default()
        };
        let start = Instant::now();
        let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("model");
        if !b.json {
            println!(
                "built GPT-2 small{tag} ({} parameters) in {:.2} s",
                model.parameter_count,
                start.elapsed().as_secs_f64()
            );
        }
        f(b, &model, tag);
    }
}

/// A Llama-shaped model with GPT-2 small's width and depth (768, 12 layers, 12 query
/// heads over 4 key/value heads, SwiGLU 2048, RMSNorm, rotary, tied head), and a
/// Qwen3-shaped one (the same with its query and key heads normalised) and a
/// Mixtral-shaped one (8 SwiGLU experts of 1024, 2 a token), against GPT-2 small, all
/// f16, in the same run: the forward at T = 128 and decode steps.
/// Then, on hardware adapters (or when asked by name), a Llama-3.2-1B-shaped seeded
/// model in f16 (2048 wide, 16 layers, 32 query heads over 8 key/value heads, SwiGLU
/// 8192, vocabulary 128,256, tied, llama3 rope): prefill T = 512 and decode, the
/// figures `pt_gpu_more.py` measures for PyTorch on the same card.
pub(crate) fn llama_vs_gpt2(b: &mut Bench, device: &DeviceChoice) {
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    let f16 = serde_json::json!({"dtype": "float16"});
    let llama = serde_json::json!({
        "dtype": "float16", "architecture": "llama", "n_kv_head": 4,
        "intermediate_size": 2048, "rope_theta": 500000.0,
    });
    // a Mixtral block at the same width (8 SwiGLU experts of 1024, 2 a token): the
    // MoE families' decode takes no deferred blocks; its gate is one dispatch with the
    // hardware kernels (`moe_norm_gate`)
    let mixtral = serde_json::json!({
        "dtype": "float16", "architecture": "mixtral", "n_kv_head": 4,
        "intermediate_size": 1024, "moe_num_experts": 8, "moe_top_k": 2,
        "rope_theta": 1000000.0,
    });
    // a Qwen3 block at the same shape: the Llama block with an RMSNorm on each query
    // and key head, one `head_norm` dispatch a block after the qkv projection
    let mut qwen3 = llama.clone();
    qwen3["architecture"] = "qwen3".into();
    // Gemma 3 blocks at the same width: Qwen3's heads with the norms after the attention
    // and the MLP (two dispatches more a block), the GELU gate, windowed layers (512)
    // with every sixth global; with 12 heads of 64, and with Gemma's 3 heads of 256 over
    // one key/value head (the attention kernels' wide pipelines)
    let mut gemma3 = qwen3.clone();
    gemma3["architecture"] = "gemma3".into();
    gemma3["sliding_window"] = 512.into();
    gemma3["sliding_window_pattern"] = 6.into();
    gemma3["rope_local_theta"] = 10000.0.into();
    gemma3["rope_theta"] = 1000000.0.into();
    let mut gemma3_256 = gemma3.clone();
    gemma3_256["n_head"] = 3.into();
    gemma3_256["n_kv_head"] = 1.into();
    gemma3_256["query_pre_attn_scalar"] = 256.0.into();
    // (llvmpipe ends a shader's loops early past 338 positions for heads of 256)
    gemma3_256["context_size"] = 320.into();
    // a Gemma 2 block at the same width: Gemma 3's without the head norms, every other
    // layer windowed, one rotary base, its soft caps (a tanh a score in the attention
    // kernels, one `logit_cap` dispatch after the LM head)
    let mut gemma2 = gemma3.clone();
    gemma2["architecture"] = "gemma2".into();
    gemma2["sliding_window_pattern"] = 2.into();
    gemma2["rope_local_theta"] = serde_json::Value::Null;
    gemma2["rope_theta"] = 10000.0.into();
    gemma2["attn_logit_softcapping"] = 50.0.into();
    gemma2["final_logit_softcapping"] = 30.0.into();
    for value in [f16, llama, qwen3, gemma3, gemma3_256, gemma2, mixtral] {
        let cfg = ModelConfig::from_value(value).expect("config");
        let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("model");
        if !b.json {
            let name = model_name(&model);
            println!("built {name} f16 ({} parameters)", model.parameter_count);
        }
        b.end_to_end(&model, 128, " f16");
        b.decode(&model, 64, 32, " f16");
    }
    // the 1B shape: minutes a step on a software adapter, so only on GPUs unless asked
    let asked = b.filter.as_deref().is_some_and(|f| f.contains("llama_1b"));
    if ctx.details.is_software() && !asked {
        return;
    }
    let cfg = ModelConfig::from_value(serde_json::json!({
        "dtype": "float16", "architecture": "llama", "vocab_size": 128256,
        "n_embed": 2048, "n_layer": 16, "n_head": 32, "n_kv_head": 8,
        "intermediate_size": 8192, "context_size": 1024, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    }))
    .expect("config");
    let start = Instant::now();
    let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("model");
    if !b.json {
        println!(
            "built llama_1b f16 ({} parameters) in {:.1} s",
            model.parameter_count,
            start.elapsed().as_secs_f64()
        );
    }
    b.end_to_end(&model, 512, " f16 (llama_1b)");
    b.decode(&model, 64, 64, " f16 (llama_1b)");
}

/// Decode steps one at a time against steps chained while the one before runs
/// (`Model::decode_chain`), in one sitting, GPT-2 small f32 and f16 with the adapter's
/// kernel class: one generation (the host's argmax over the logits read back, the
/// device's argmax, chained) and 8 (the device's argmax, chained).
pub(crate) fn gpt2_chain(b: &mut Bench, device: &DeviceChoice) {
    each_gpt2_small(b, device, |b, model, tag| {
        b.decode(model, 64, 32, tag);
        for round in 0..2 {
            // twice, interleaved: the machine's drift shows as the rounds' spread
            if !b.json {
                println!("round {round}");
            }
            for (n, pick) in [
                (1, Pick::HostGreedy),
                (1, Pick::DeviceArgmax),
                (1, Pick::Chained),
                (8, Pick::DeviceArgmax),
                (8, Pick::Chained),
            ] {
                b.decode_batch(model, n, 64, 16, pick, tag);
            }
        }
    });
}

/// GPT-2 small with the hardware kernels (on any adapter): decode steps with the
/// residual adds deferred (`decode_blocks` auto, 3 dispatches a block) against one
/// dispatch per linear (5 a block), f32 and f16, in two interleaved rounds: a prefill
/// of 64 tokens (deferred: the short-chunk path), one generation, 16 with the
/// device's argmax (4 on a CPU adapter), and a prompt of 34 tokens joining those 16 (a
/// mixed step against a prefill step and a decode step); each model's step profiles
/// first.
pub(crate) fn gpt2_blocks(b: &mut Bench, device: &DeviceChoice) {
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    for (dtype, half) in [("float32", ""), ("float16", " f16")] {
        let base = serde_json::json!({ "dtype": dtype });
        let ways = [("auto", "deferred"), ("per_linear", "per linear")];
        let models = ab_models(&ctx, &pl, &base, "decode_blocks", ways, half);
        // a GPU's batch; a CPU adapter runs these GPU-shaped kernels a few rows at a time
        let rows = if ctx.details.is_software() { 4 } else { BATCH };
        for (model, tag) in &models {
            b.profile_steps(model, rows, tag);
        }
        interleaved(b, &models, |b, model, tag| {
            b.decode(model, 64, 32, tag);
            b.decode_batch(model, rows, 64, 16, Pick::DeviceArgmax, tag);
            b.join_batch(model, rows, 34, tag);
        });
    }
}

/// `base` with the hardware kernels built once for each of two `ways` of config `key`
/// (its value, and the word its rows carry after `half`): the pairs an A/B group
/// times in interleaved rounds (`tools/bench_ab.py` pairs the rows by those words).
fn ab_models(
    ctx: &std::sync::Arc<GpuContext>,
    pl: &std::sync::Arc<Pipelines>,
    base: &serde_json::Value,
    key: &str,
    ways: [(&str, &str); 2],
    half: &str,
) -> Vec<(Model, String)> {
    ways.into_iter()
        .map(|(value, word)| {
            let mut cfg = base.clone();
            cfg["kernels"] = "hardware".into();
            cfg[key] = value.into();
            let cfg = ModelConfig::from_value(cfg).expect("config");
            let model = Model::build(cfg, None, ctx.clone(), pl.clone()).expect("model");
            (model, format!("{half} hw {word}"))
        })
        .collect()
}

/// `f` for each of `models` in two interleaved rounds: the machine's drift shows as
/// the rounds' spread, not as a difference between the models.
fn interleaved(
    b: &mut Bench,
    models: &[(Model, String)],
    mut f: impl FnMut(&mut Bench, &Model, &str),
) {
    for round in 0..2 {
        if !b.json {
            println!("round {round}");
        }
        for (model, tag) in models {
            f(b, model, tag);
        }
    }
}

/// The hardware kernels' tile matmuls with the norms (and a Llama block's SwiGLU)
/// folded into their staging (`matmul_fusion` auto) against those ops dispatched
/// (`separate`), in two interleaved rounds: GPT-2 small f32 and f16, and an f16
/// Llama-shaped model of its size; the forward at T = 128 and 512 and a burst of 16
/// prompts of 34 tokens (4 and T = 128 alone on a software adapter), each model's step
/// profile first on a GPU (the kernels of a 128-row chunk, the burst).
pub(crate) fn gpt2_staging(b: &mut Bench, device: &DeviceChoice) {
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    let software = ctx.details.is_software();
    let (ts, burst): (&[usize], usize) = if software {
        (&[128], 4)
    } else {
        (&[128, 512], BATCH)
    };
    let llama = serde_json::json!({
        "dtype": "float16", "architecture": "llama", "n_kv_head": 4,
        "intermediate_size": 2048, "rope_theta": 500000.0,
    });
    let shapes = [
        (serde_json::json!({"dtype": "float32"}), ""),
        (serde_json::json!({"dtype": "float16"}), " f16"),
        (llama, " f16"),
    ];
    for (base, half) in shapes {
        let ways = [("auto", "folded"), ("separate", "separate")];
        let models = ab_models(&ctx, &pl, &base, "matmul_fusion", ways, half);
        if !software {
            for (model, tag) in &models {
                b.profile_steps(model, BATCH, tag);
            }
        }
        interleaved(b, &models, |b, model, tag| {
            for &t in ts {
                b.end_to_end(model, t, tag);
            }
            b.prefill_batch(model, burst, 34, tag);
        });
    }
}

/// Kernel-by-kernel device times of a decode step (1 and 16 rows), a 16-prompt
/// prefill traversal and a prefill chunk of 128 rows, f32 and f16.
pub(crate) fn gpt2_profile(b: &mut Bench, device: &DeviceChoice) {
    each_gpt2_small(b, device, |b, model, tag| {
        b.profile_steps(model, BATCH, tag)
    });
}

/// MoE (E = 8, k = 2) against a dense model with the same active parameters per token.
pub(crate) fn moe(b: &mut Bench, device: &DeviceChoice) {
    // MoE (E = 8, k = 2) against a dense model with the same active parameters
    // per token (MLP width 2 · 4 · C = 8 · C), 2 layers of GPT-2-small width.
    let ctx = std::sync::Arc::new(GpuContext::new(device).expect("no adapter"));
    let pl = std::sync::Arc::new(Pipelines::new(&ctx).expect("pipelines"));
    let build = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"n_layer": 2, "seed": 3});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Model::build(
            ModelConfig::from_value(v).unwrap(),
            None,
            ctx.clone(),
            pl.clone(),
        )
        .expect("model")
    };
    // GPT-2-small width, and a narrow model (n_embed 256) where fixed costs weigh more
    for (c, nh) in [(768, 12), (256, 4)] {
        let width = serde_json::json!({"n_embed": c, "n_head": nh});
        let with = |extra: serde_json::Value| {
            let mut v = width.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let moe = build(with(
            serde_json::json!({"use_moe": true, "moe_num_experts": 8, "moe_top_k": 2}),
        ));
        let dense = build(with(serde_json::json!({"ffn_hidden_multiplier": 8})));
        for t in [16, 128] {
            let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7919 + 13) % 50257).collect();
            let time = |m: &Model| {
                m.forward(&ids, 5, false).unwrap();
                median(
                    (0..5)
                        .map(|_| m.forward(&ids, 5, false).unwrap().seconds * 1e3)
                        .collect(),
                )
            };
            let (moe_ms, dense_ms) = (time(&moe), time(&dense));
            let flops = 2.0 * t as f64 * dense.parameter_count as f64;
            b.report(
                "moe_fwd",
                format!("E=8 k=2 C={c} T={t}"),
                moe_ms,
                flops,
                "GFLOP/s",
                None,
                "",
            );
            b.report(
                "dense_fwd",
                format!("MLP 8C C={c} T={t}"),
                dense_ms,
                flops,
                "GFLOP/s",
                None,
                "",
            );
            if !b.json {
                println!(
                    "{:<26} {:<26} MoE / dense with the same active parameters: {:.2}x",
                    "",
                    "",
                    moe_ms / dense_ms
                );
            }
        }
    }
}
