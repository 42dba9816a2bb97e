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
        count(&c, "#heatmap rect.cell").await > 0
    })
    .await;
    let t = count(&c, "#tokens span").await;
    assert!(t > 5, "{t} tokens");
    assert_eq!(count(&c, "#heatmap rect.cell").await, t * t);
    assert_eq!(count(&c, "#topk rect.bar").await, 4);
    assert_eq!(
        count(&c, "#heads figure").await,
        2,
        "small multiples: one per head"
    );
    assert_eq!(
        count(&c, "#lens tr").await,
        1 + 2,
        "logit lens: header and one row per layer"
    );
    assert_eq!(text(&c, "forward-error").await, "");
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
