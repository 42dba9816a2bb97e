//! The explorer page in a real browser: Debian's Chromium driven through chromedriver
//! (WebDriver, fantoccini) against a real server on loopback. `.ci/run` installs both;
//! outside CI the test says so and passes when they are missing.
//!
//! It loads the page, initializes the tiny preset, runs a forward (the heatmap has T × T
//! cells, the top-k chart k bars, the logit-lens table a row per layer), generates
//! (tokens arrive before `complete`), cancels a generation, and finds no error in the
//! page. With `WGFORMER_SCREENSHOTS=DIR` it writes a screenshot of each panel there.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port, ended when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Option<Driver> {
    let present =
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: install Debian's chromium and chromium-driver"
        );
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} is not installed (CI installs them)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    Some(Driver { child, port })
}

/// chromedriver's browser log (`POST /session/{id}/se/log`, what Selenium's
/// `get_log("browser")` asks): every console message and failed load since the last
/// call.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type": "browser"}"#.into()))
    }
}

/// The browser log's warnings and errors.
async fn console_errors(c: &Client) -> Vec<serde_json::Value> {
    let log = c
        .issue_cmd(BrowserLog)
        .await
        .expect("chromedriver returns the browser log");
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .cloned()
        .collect()
}

async fn connect(port: u16) -> Client {
    let caps = json!({
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,2000"]
        }
    });
    let caps: fantoccini::wd::Capabilities = caps.as_object().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// Wait (bounded) until `cond` holds on the page.
async fn until<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn text(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

async fn set(c: &Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_works_in_a_real_browser() {
    let Some(driver) = start_driver() else { return };
    let s = Server::start(16, 1 << 20).await;
    let c = connect(driver.port).await;
    c.goto(&s.url("/")).await.unwrap();
    // errors the page raises or logs from here on
    c.execute(
        "window.__errors = []; window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
         const ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); ce(...a); };
         window.__forwards = 0; const F = window.fetch;
         window.fetch = (u, o) => { if (String(u).includes('/api/v1/forward')) window.__forwards++; return F(u, o); };
         window.__events = []; const WS = window.WebSocket;
         window.WebSocket = function (u, p) { const w = new WS(u, p); w.addEventListener('message', (m) => window.__events.push(JSON.parse(m.data).type)); return w; };",
        vec![],
    )
    .await
    .unwrap();

    // model panel: the tiny preset
    let preset = c.find(Locator::Id("preset")).await.unwrap();
    preset.select_by_label("Tiny (2 layers)").await.unwrap();
    click(&c, "init").await;
    until("the model", 60, || async {
        text(&c, "model-info").await.contains("layers 2")
    })
    .await;
    assert_eq!(text(&c, "model-error").await, "");

    // forward panel
    set(&c, "ftext", "The cat sat on the mat and looked at the dog").await;
    set(&c, "fk", "4").await;
    click(&c, "run").await;
    until("the heatmap", 60, || async {
        js(
            &c,
            "return document.getElementById('heatmap').dataset.t || ''",
        )
        .await
            != json!("")
    })
    .await;
    let t = count(&c, "#tokens span").await;
    assert!(t > 5, "{t} tokens");
    assert_eq!(
        js(&c, "return +document.getElementById('heatmap').dataset.t").await,
        json!(t)
    );
    assert_eq!(count(&c, "#topk rect.bar").await, 4);
    assert_eq!(
        count(&c, "#heads button").await,
        2,
        "small multiples: one per head"
    );
    assert_eq!(
        count(&c, "#lens tr").await,
        1 + 2,
        "logit lens: header and one row per layer"
    );
    assert_eq!(
        count(&c, "#overview tr").await,
        1 + 2 * 2,
        "layers x heads overview"
    );
    assert_eq!(text(&c, "forward-error").await, "");
    // per-token loss: every chip but the first says how likely it was
    let titles = js(
        &c,
        "return [...document.querySelectorAll('#tokens span')].map((s) => s.title)",
    )
    .await;
    let titles: Vec<String> = serde_json::from_value(titles).unwrap();
    assert!(
        titles[1..]
            .iter()
            .all(|s| s.contains("log p =") && s.contains("rank")),
        "{titles:?}"
    );

    // switching head and layer redraws from the data in hand: no forward is sent
    let forwards = js(&c, "return window.__forwards").await;
    let heads = c.find_all(Locator::Css("#heads button")).await.unwrap();
    heads[1].click().await.unwrap();
    assert_eq!(js(&c, "return document.querySelector('#heads button[aria-pressed=true]').getAttribute('aria-label')").await, json!("head 1"));
    c.find(Locator::Id("flayer"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    until("layer 1", 30, || async {
        js(
            &c,
            "return document.querySelectorAll('#overview tr.sel[data-l=\"1\"]').length",
        )
        .await
            == json!(1)
    })
    .await;
    assert_eq!(
        js(&c, "return window.__forwards").await,
        forwards,
        "a switch sent a forward"
    );
    // a brush zooms into a rectangle of queries and keys; a double-click shows it all
    c.execute(
        "const c = document.getElementById('heatmap'), r = c.getBoundingClientRect(), d = c.dataset;
         const at = (type, q, k) => c.dispatchEvent(new MouseEvent(type, { bubbles: true,
           clientX: r.left + +d.pad + (k + 0.5) * +d.cell, clientY: r.top + +d.pad + (q + 0.5) * +d.cell }));
         at('mousedown', 2, 1); at('mousemove', 4, 3); at('mouseup', 4, 3);",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(js(&c, "const d = document.getElementById('heatmap').dataset; return [+d.q0, +d.k0, +d.nq, +d.nk]").await, json!([2, 1, 3, 3]));
    c.execute("document.getElementById('heatmap').dispatchEvent(new MouseEvent('dblclick', { bubbles: true }))", vec![]).await.unwrap();
    assert_eq!(
        js(&c, "return +document.getElementById('heatmap').dataset.nq").await,
        json!(t)
    );
    // lens values from the keyboard: a focused cell reads out its tokens
    c.execute("document.querySelector('#lens td').focus()", vec![])
        .await
        .unwrap();
    assert!(text(&c, "lens-readout")
        .await
        .starts_with("layer 0, position 0:"));
    // step-through: the slider moves the layer; the lens row and norm bar follow
    c.execute("const s = document.getElementById('fslider'); s.value = 0; s.dispatchEvent(new Event('input'))", vec![]).await.unwrap();
    until("layer 0", 30, || async {
        js(&c, "return document.getElementById('flayer').value").await == json!("0")
    })
    .await;
    until("the lens row", 30, || async { js(&c, "return [...document.querySelectorAll('#lens tr')].findIndex((tr) => tr.classList.contains('sel'))").await == json!(1) }).await;
    assert_eq!(js(&c, "return window.__forwards").await, forwards);
    // the keyboard: Enter on a head keeps the focus there and marks the head
    let heads = c.find_all(Locator::Css("#heads button")).await.unwrap();
    heads[0].send_keys("\u{E007}").await.unwrap();
    assert_eq!(
        js(
            &c,
            "return document.activeElement.getAttribute('aria-label')"
        )
        .await,
        json!("head 0")
    );
    assert_eq!(js(&c, "return document.querySelector('#heads button[aria-pressed=true]').getAttribute('aria-label')").await, json!("head 0"));

    // characters split over byte-level tokens show as themselves, never U+FFFD
    set(&c, "ftext", "na\u{ef}ve caf\u{e9} \u{1F600} ok").await;
    click(&c, "run").await;
    until("the new tokens", 60, || async {
        js(&c, "return document.getElementById('tokens').textContent")
            .await
            .as_str()
            .unwrap_or("")
            .contains("caf")
    })
    .await;
    let chips = js(&c, "return document.getElementById('tokens').textContent").await;
    let chips = chips.as_str().unwrap();
    assert!(
        chips.contains('\u{e9}') && chips.contains('\u{1F600}') && !chips.contains('\u{FFFD}'),
        "{chips:?}"
    );

    // an error as the API words it
    set(&c, "ftext", "").await;
    click(&c, "run").await;
    until("the error", 30, || async {
        text(&c, "forward-error").await.contains("INVALID_INPUT")
    })
    .await;
    // the console so far: only the browser's note of that 400 (the log empties as read)
    let logged = console_errors(&c).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0]["message"].as_str().unwrap().contains(
            "/api/v1/forward - Failed to load resource: the server responded with a status of 400"
        ),
        "{logged:?}"
    );

    // 256 tokens: the page never grows wider than the window (at 1280 and 800 px);
    // the time to draw the heatmap and to switch head are the page's own figures
    set(
        &c,
        "config",
        r#"{"n_layer": 2, "n_embed": 64, "n_head": 2, "context_size": 256}"#,
    )
    .await;
    click(&c, "init").await;
    until("the 256 context", 60, || async {
        text(&c, "model-info").await.contains("context 256")
    })
    .await;
    assert_eq!(
        count(&c, "#tokens span").await,
        0,
        "no result of the previous model stays"
    );
    set(&c, "ftext", &format!("word{}", " word".repeat(255))).await;
    for width in [1280, 800] {
        c.set_window_size(width, 2000).await.unwrap();
        click(&c, "run").await;
        until("256 tokens", 120, || async {
            js(
                &c,
                "return document.getElementById('heatmap').dataset.t || ''",
            )
            .await
                == json!("256")
        })
        .await;
        let (scroll, inner) = (
            js(&c, "return document.documentElement.scrollWidth").await,
            js(&c, "return window.innerWidth").await,
        );
        assert!(
            scroll.as_u64() <= inner.as_u64(),
            "at {width} px the page is {scroll} px wide in a {inner} px window"
        );
        let forwards = js(&c, "return window.__forwards").await;
        let t0 = js(&c, "const t = performance.now(); document.querySelectorAll('#heads button')[1].click(); return performance.now() - t").await;
        assert_eq!(js(&c, "return window.__forwards").await, forwards);
        let timings = js(&c, "return window.__explorer.timings").await;
        eprintln!("explorer at {width} px, T = 256: {timings}, head switch {t0} ms");
        if let (Some(dir), 1280) = (std::env::var_os("WGFORMER_SCREENSHOTS"), width) {
            let png = c
                .find(Locator::Id("forward-panel"))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            std::fs::write(
                std::path::Path::new(&dir).join("explorer-forward-256.png"),
                png,
            )
            .unwrap();
        }
        c.execute("document.getElementById('heatmap').dataset.t = ''", vec![])
            .await
            .unwrap();
    }
    c.set_window_size(1280, 2000).await.unwrap();

    // a Mixture-of-Experts model: routing per token; then a dense one: no MoE panel left
    c.find(Locator::Id("preset"))
        .await
        .unwrap()
        .select_by_label("Mixture of Experts (4 layers)")
        .await
        .unwrap();
    click(&c, "init").await;
    until("the MoE model", 120, || async {
        text(&c, "model-info").await.contains("Mixture of Experts")
    })
    .await;
    assert_eq!(
        js(
            &c,
            "return document.getElementById('heatmap').dataset.t ?? ''"
        )
        .await,
        json!("")
    );
    set(&c, "ftext", "Experts route each token").await;
    click(&c, "run").await;
    until("the routing", 120, || async {
        count(&c, "#routing rect.route").await > 0
    })
    .await;
    let t = count(&c, "#tokens span").await;
    assert_eq!(
        count(&c, "#routing rect.route").await,
        2 * t,
        "top-2 experts a token"
    );
    assert_eq!(
        js(&c, "return document.getElementById('moe-box').hidden").await,
        json!(false)
    );
    c.find(Locator::Id("preset"))
        .await
        .unwrap()
        .select_by_label("Tiny (2 layers)")
        .await
        .unwrap();
    click(&c, "init").await;
    until("the tiny model", 60, || async {
        text(&c, "model-info")
            .await
            .contains("layers 2, heads 2, width 64, context 128")
    })
    .await;
    assert_eq!(
        js(&c, "return document.getElementById('moe-box').hidden").await,
        json!(true)
    );
    assert_eq!(count(&c, "#tokens span").await, 0);
    assert_eq!(count(&c, "#lens tr").await, 0);
    // induction: random words said twice; the overview scores every head on them
    click(&c, "repeat").await;
    until("the induction scores", 60, || async {
        js(
            &c,
            "return window.__explorer.fwd && window.__explorer.fwd.repeatLen || 0",
        )
        .await
            != json!(0)
    })
    .await;
    let t = count(&c, "#tokens span").await;
    assert_eq!(
        js(&c, "return window.__explorer.fwd.repeatLen").await,
        json!(t / 2)
    );
    let scores = js(&c, "return [...document.querySelectorAll('#overview tr[data-l] td:last-child')].map((td) => td.textContent)").await;
    let scores: Vec<String> = serde_json::from_value(scores).unwrap();
    assert_eq!(scores.len(), 4);
    assert!(
        scores
            .iter()
            .all(|s| s.parse::<f64>().is_ok_and(|x| (0.0..=1.0).contains(&x))),
        "{scores:?}"
    );
    // an empty config is an error, not GPT-2 small
    set(&c, "config", " ").await;
    click(&c, "init").await;
    until("the empty-config error", 10, || async {
        text(&c, "model-error").await.contains("empty")
    })
    .await;

    // generate panel: tokens stream in before `complete`
    set(&c, "gtext", "Once upon a time").await;
    set(&c, "gmax", "24").await;
    set(&c, "gseed", "3").await;
    click(&c, "gen").await;
    until("complete", 60, || async {
        text(&c, "gstatus").await.contains("complete")
    })
    .await;
    assert_eq!(count(&c, "#out span.tok").await, 24);
    let events = c.execute("return window.__events", vec![]).await.unwrap();
    let events: Vec<String> = serde_json::from_value(events).unwrap();
    let first_complete = events
        .iter()
        .position(|e| e == "complete")
        .expect("complete");
    assert_eq!(
        events[..first_complete]
            .iter()
            .filter(|e| *e == "token")
            .count(),
        24,
        "{events:?}"
    );

    // cancel: a long generation (GPT-2 small, 200 tokens: tens of seconds on lavapipe)
    // stops early and the engine is free again
    c.find(Locator::Id("preset"))
        .await
        .unwrap()
        .select_by_label("GPT-2 small")
        .await
        .unwrap();
    click(&c, "init").await;
    until("GPT-2 small", 120, || async {
        text(&c, "model-info").await.contains("layers 12")
    })
    .await;
    set(&c, "gmax", "200").await;
    click(&c, "gen").await;
    until("a first token", 120, || async {
        count(&c, "#out span.tok").await > 0
    })
    .await;
    click(&c, "cancel").await;
    until("the cancel", 60, || async {
        text(&c, "gstatus").await.contains("cancelled after")
    })
    .await;
    until("an idle engine", 30, || async {
        let (_, st) = get(&s, "/api/v1/status").await;
        st["active_generations"] == 0
    })
    .await;
    assert!(count(&c, "#out span.tok").await < 200);
    assert_eq!(text(&c, "generate-error").await, "");

    if let Some(dir) = std::env::var_os("WGFORMER_SCREENSHOTS") {
        for panel in ["model-panel", "forward-panel", "generate-panel"] {
            let png = c
                .find(Locator::Id(panel))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            let name = format!("explorer-{}.png", panel.trim_end_matches("-panel"));
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    }
    let errors = c.execute("return window.__errors", vec![]).await.unwrap();
    assert_eq!(errors, json!([]), "errors in the page");
    // the console since: nothing at warning or error level, no failed load
    assert_eq!(
        console_errors(&c).await,
        Vec::<serde_json::Value>::new(),
        "browser console"
    );
    c.close().await.unwrap();
}
