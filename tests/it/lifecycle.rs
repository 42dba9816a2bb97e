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
