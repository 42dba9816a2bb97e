//! The `wgformer` binary starts, serves and stops cleanly: exit status 0 after
//! SIGTERM every time (the device is dropped on the engine thread before the process
//! exits), and within the shutdown deadline even with a slow client attached.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TINY: &str =
    r#"{"vocab_size": 512, "n_layer": 1, "n_embed": 32, "n_head": 2, "context_size": 32}"#;

/// Start the binary on a free port and return it with its address.
fn start(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args([
            "serve",
            "--port",
            "0",
            "--config",
            TINY,
            "--log-level",
            "warn",
        ])
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wgformer");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("wgformer listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

fn ping(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET /api/v1/health/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn terminate(child: &mut Child) -> (i32, Duration) {
    let started = Instant::now();
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            return (code, started.elapsed());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn fifty_start_stop_cycles_exit_zero() {
    let mut statuses = Vec::new();
    for i in 0..50 {
        let (mut child, addr) = start(&[]);
        // every other cycle: SIGTERM right after the announcement (the handlers must
        // already be installed), else after serving a request
        if i % 2 == 1 {
            assert!(ping(&addr).contains("PONG"));
        }
        statuses.push(terminate(&mut child).0);
    }
    let bad: Vec<_> = statuses.iter().filter(|s| **s != 0).collect();
    assert!(bad.is_empty(), "exit statuses other than 0: {bad:?}");
}

#[test]
fn shutdown_deadline_holds_with_a_slow_client() {
    let (mut child, addr) = start(&["--shutdown-timeout", "1", "--body-timeout", "120"]);
    // a request whose body never finishes keeps a connection busy
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(
        b"POST /api/v1/forward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"te",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (code, took) = terminate(&mut child);
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn probe_answers_as_a_health_check() {
    // `wgformer probe URL`: 0 on a 2xx, 1 on another status or no answer — what a
    // container's HEALTHCHECK runs, with no curl in the image
    let (mut child, addr) = start(&[]);
    let probe = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_wgformer"))
            .args(["probe", &format!("http://{addr}{path}"), "--timeout", "30"])
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe("/api/v1/health/ready").status.success() {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(probe("/api/v1/health/ping").status.success());
    let missing = probe("/no/such/path");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"));
    let (code, _) = terminate(&mut child);
    assert_eq!(code, 0);
    // nothing listening any more: 1, promptly
    let gone = probe("/api/v1/health/ready");
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn require_hardware_refuses_a_software_adapter() {
    // --require-hardware: on a machine with only software adapters (lavapipe) the
    // process says what it found and exits 2; with a GPU it starts as usual
    let hardware = wgformer::gpu::list_adapters()
        .iter()
        .any(|a| !a.details.is_software());
    if hardware {
        let (mut child, addr) = start(&["--require-hardware"]);
        assert!(ping(&addr).starts_with("HTTP/1.1 200"));
        assert_eq!(terminate(&mut child).0, 0);
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args([
            "serve",
            "--port",
            "0",
            "--require-hardware",
            "--config",
            TINY,
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no hardware adapter") && err.contains("VK_ICD_FILENAMES"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it must not start listening");
}

#[test]
fn info_reports_each_adapters_subgroups() {
    // `wgformer info`: every adapter with its subgroup sizes and whether the subgroup
    // kernels and the tensor-core matmul can run; lavapipe's subgroups follow its vector
    // width (tools/test_adapters.sh relies on it), the subgroup kernels need 8 lanes
    let info = |bits: &str| -> Vec<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_wgformer"))
            .arg("info")
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("LP_NATIVE_VECTOR_WIDTH", bits)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let lavapipe = |adapters: &[serde_json::Value]| {
        adapters
            .iter()
            .find(|a| a["backend"] == "Vulkan" && a["driver"] == "llvmpipe")
            .cloned()
    };
    let adapters = info("256");
    assert!(!adapters.is_empty());
    for a in &adapters {
        let sizes = a["subgroup_sizes"].as_array().expect("subgroup_sizes");
        let (min, max) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        assert!(min <= max, "{a}");
        if a["subgroup_kernels"] == true {
            assert!(min >= 8, "{a}");
        }
        if a["cooperative_matrix"] == true {
            assert_eq!((min, max), (32, 32), "{a}");
        }
    }
    if lavapipe(&adapters).is_none() {
        return; // a GPU machine without Mesa: nothing to set the width of
    }
    for (bits, lanes, kernels) in [("128", 4, false), ("256", 8, true), ("1024", 32, true)] {
        let a = lavapipe(&info(bits)).unwrap();
        assert_eq!(
            a["subgroup_sizes"],
            serde_json::json!([lanes, lanes]),
            "{bits}: {a}"
        );
        assert_eq!(a["subgroup_kernels"], kernels, "{bits}: {a}");
        assert_eq!(a["cooperative_matrix"], false, "{a}");
    }
}

/// `key: value` pairs of the ConfigMap's `data` (our own file: one pair a line).
fn configmap_data(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let data = text.split("\ndata:\n").nth(1).expect("a data section");
    data.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches(|c| c == '\'' || c == '"').to_string(),
            )
        })
        .collect()
}

#[test]
fn the_deployment_environment_serves_and_drains() {
    // The release binary with exactly the Deployment's environment (the ConfigMap's
    // data and the container's `env` values; the port and the model made local) is
    // probed as the kubelet would, then SIGTERM arrives during a stream: the stream
    // ends cleanly and the process exits 0 within terminationGracePeriodSeconds.
    let root = env!("CARGO_MANIFEST_DIR");
    let deployment =
        std::fs::read_to_string(format!("{root}/deploy/k8s/base/deployment.yaml")).unwrap();
    let mut env = configmap_data(&format!("{root}/deploy/k8s/base/configmap.yaml"));
    let lines: Vec<&str> = deployment.lines().map(str::trim).collect();
    for w in lines.windows(2) {
        if let (Some(name), Some(value)) =
            (w[0].strip_prefix("- name: "), w[1].strip_prefix("value: "))
        {
            env.push((name.to_string(), value.trim_matches('"').to_string()));
        }
    }
    let grace: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("terminationGracePeriodSeconds: "))
        .unwrap()
        .parse()
        .unwrap();
    let probes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("path: "))
        .filter(|p| p.starts_with("/api/"))
        .collect();
    assert_eq!(probes.len(), 3, "startup, readiness and liveness paths");
    let families = format!("{root}/tests/fixtures/families");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgformer"));
    cmd.args(["serve", "--port", "0"]).env_clear();
    for (k, v) in &env {
        let v = match k.as_str() {
            "WGFORMER_HOST" => "127.0.0.1".to_string(),
            "WGFORMER_MODELS_DIR" => families.clone(),
            // the model made local: the fixture directory in place of the volume's
            "WGFORMER_CONFIG" => v.replace("/models/SmolLM2-135M", &format!("{families}/llama")),
            "XDG_RUNTIME_DIR" => std::env::temp_dir().to_string_lossy().into_owned(),
            _ => v.clone(),
        };
        cmd.env(k, v);
    }
    assert!(env.iter().any(|(k, _)| k == "WGFORMER_CONFIG"));
    let mut child = cmd
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("wgformer listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let get = |path: &str| -> String {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kube-probe/1.37\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    for path in &probes {
        while !get(path).starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "{path} never answered 200");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // a stream in progress when SIGTERM arrives
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = r#"{"prompt": "The quick brown fox", "max_tokens": 80, "stream": true}"#;
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 256];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let (code, took) = terminate(&mut child);
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]"),
        "the stream ended cleanly: {rest:?}"
    );
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(grace),
        "took {took:?}, grace {grace} s"
    );
}

#[test]
fn sigterm_during_the_startup_build_exits_zero() {
    // GPT-2 small takes seconds to build on a software adapter: a SIGTERM before the
    // service listens ends the process with status 0 (not 143), without listening
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args([
            "serve",
            "--port",
            "0",
            "--config",
            "{}",
            "--log-level",
            "warn",
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (code, took) = terminate(&mut child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    if out.contains("listening") {
        // a fast adapter finished the build first: then the usual drain applies
        assert_eq!(code, 0);
        return;
    }
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("signal during the start-up build"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
