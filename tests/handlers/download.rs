//! download-file.sh against a local HTTP server (127.0.0.1, port 0) and file:// URLs.

use std::fs;
use std::net::TcpListener;
use std::path::Path;

use crate::harness::{which, Run, Sandbox};
use crate::http_server::{Request, Route, Server};

/// 200 KiB of varied bytes, so a misplaced resume would show.
fn payload() -> Vec<u8> {
    (0..200 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    fs::write(&f, data).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&f)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn gets(server: &Server, path: &str) -> Vec<Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .collect()
}

/// The GETs that transferred data (BusyBox's spider GET, always first, left out).
fn transfers(server: &Server, path: &str, tool: &str) -> Vec<Request> {
    let mut g = gets(server, path);
    if tool == "busybox-wget" && !g.is_empty() {
        g.remove(0);
    }
    g
}

/// `payload()`, served whole.
fn payload_route() -> Route {
    Route {
        body: payload(),
        ..Route::default()
    }
}

/// `payload()`, with the first download attempt of `tool` cut after `at` bytes.
fn cut_route(tool: &str, at: usize) -> Route {
    Route {
        cut_gets: cuts(tool),
        cut_at: at,
        ..payload_route()
    }
}

/// A server with `route` at `path`.
fn serve(path: &str, route: Route) -> Server {
    let server = Server::start();
    server.route(path, route);
    server
}

/// `download-file.sh "" URL DEST [more...]` (no runAsUser).
fn download(sb: &Sandbox, url: &str, dest: &Path, more: &[&str]) -> Run {
    let mut args = vec!["", url, dest.to_str().unwrap()];
    args.extend_from_slice(more);
    sb.run("download-file.sh", &args)
}

/// Sandboxes for each downloader: curl only, GNU wget only, and BusyBox's wget when this
/// machine has busybox (small gateways often have nothing else).
fn downloaders() -> Vec<(&'static str, Sandbox)> {
    let mut v = vec![
        ("curl", Sandbox::with_tools(&["curl"])),
        ("wget", Sandbox::with_tools(&["wget"])),
    ];
    if let Some(busybox) = which("busybox") {
        let sb = Sandbox::new();
        sb.link_as("wget", &busybox);
        v.push(("busybox-wget", sb));
    } else {
        eprintln!("note: busybox not installed; BusyBox wget not tested");
    }
    v
}

/// GETs to cut short so that the first download attempt is interrupted: BusyBox's
/// `wget --spider` (the size check) is a GET too, and must not take the cut.
fn cuts(tool: &str) -> usize {
    if tool == "busybox-wget" {
        2
    } else {
        1
    }
}

#[test]
fn full_download_with_curl_or_wget_checks_size_first_and_renames_atomically() {
    for (tool, sb) in downloaders() {
        let server = serve("/fw.bin", payload_route());
        let dest = sb.path("out/nested/fw.bin");
        let r = download(&sb, &server.url("/fw.bin"), &dest, &[]);
        r.expect(0);
        assert_eq!(fs::read(&dest).unwrap(), payload(), "{tool}");
        assert!(!sb.path("out/nested/fw.bin.part").exists(), "{tool}");
        assert!(
            r.stdout
                .contains(&format!("size {} bytes", payload().len())),
            "{tool}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("disk space ok"), "{tool}: {}", r.stdout);
        assert!(
            r.stdout.contains(&format!("with {tool} ")),
            "{tool}: {}",
            r.stdout
        );
        let reqs = server.requests();
        if tool != "busybox-wget" {
            assert_eq!(reqs[0].method, "HEAD", "{tool}: {reqs:?}");
        }
        let t = transfers(&server, "/fw.bin", tool);
        assert_eq!(t.len(), 1, "{tool}: {reqs:?}");
        assert_eq!(t[0].range, None, "{tool}");
    }
}

#[test]
fn an_interrupted_transfer_is_resumed_within_the_run() {
    for (tool, sb) in downloaders() {
        let server = serve("/fw.bin", cut_route(tool, 70_000));
        let dest = sb.path("fw.bin");
        let r = download(&sb, &server.url("/fw.bin"), &dest, &[]);
        r.expect(0);
        assert_eq!(fs::read(&dest).unwrap(), payload(), "{tool}");
        let g = transfers(&server, "/fw.bin", tool);
        assert_eq!(g.len(), 2, "{tool}: {g:?}");
        assert_eq!(g[1].range.as_deref(), Some("bytes=70000-"), "{tool}: {g:?}");
        assert!(
            r.stdout.contains("resuming at byte 70000"),
            "{tool}: {}",
            r.stdout
        );
    }
}

#[test]
fn an_interrupted_download_keeps_its_partial_file_and_the_next_run_resumes() {
    for (tool, mut sb) in downloaders() {
        sb.env("IOTJOBS_DOWNLOAD_ATTEMPTS", "1");
        let server = serve("/fw.bin", cut_route(tool, 50_000));
        let dest = sb.path("fw.bin");
        let args = ["", &server.url("/fw.bin"), dest.to_str().unwrap()];
        let r = sb.run("download-file.sh", &args);
        r.expect(15);
        assert!(
            r.stderr.contains("re-run to resume"),
            "{tool}: {}",
            r.stderr
        );
        assert!(!dest.exists(), "{tool}");
        assert_eq!(
            fs::read(sb.path("fw.bin.part")).unwrap(),
            &payload()[..50_000],
            "{tool}"
        );

        let r = sb.run("download-file.sh", &args);
        r.expect(0);
        assert_eq!(fs::read(&dest).unwrap(), payload(), "{tool}");
        let g = gets(&server, "/fw.bin");
        assert_eq!(
            g.last().unwrap().range.as_deref(),
            Some("bytes=50000-"),
            "{tool}: {g:?}"
        );
        assert!(!sb.path("fw.bin.part").exists(), "{tool}");
    }
}

#[test]
fn checksum_is_verified_and_a_mismatch_leaves_the_destination_untouched() {
    let sb = Sandbox::with_tools(&["curl"]);
    let server = serve("/fw.bin", payload_route());
    let dest = sb.path("fw.bin");
    fs::write(&dest, b"previous version").unwrap();
    let url = server.url("/fw.bin");
    let wrong = "0".repeat(64);
    let r = download(&sb, &url, &dest, &[&wrong]);
    r.expect(12);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert_eq!(fs::read(&dest).unwrap(), b"previous version");
    assert!(!sb.path("fw.bin.part").exists());

    // Upper-case digits are accepted.
    let right = sha256(&payload()).to_uppercase();
    let r = download(&sb, &url, &dest, &[&right]);
    r.expect(0);
    assert!(r.stdout.contains("sha256 verified"), "{}", r.stdout);
    assert_eq!(fs::read(&dest).unwrap(), payload());
}

#[test]
fn http_404_is_a_clear_error_with_exit_10() {
    for (tool, sb) in downloaders() {
        let server = Server::start();
        let dest = sb.path("missing.bin");
        let r = download(&sb, &server.url("/missing.bin"), &dest, &[]);
        r.expect(10);
        assert!(r.stderr.contains("HTTP error"), "{tool}: {}", r.stderr);
        assert!(r.stderr.contains("404"), "{tool}: {}", r.stderr);
        assert!(!dest.exists(), "{tool}");
        assert!(!sb.path("missing.bin.part").exists(), "{tool}");
    }
}

#[test]
fn a_refused_connection_is_exit_11() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (tool, sb) in downloaders() {
        let dest = sb.path("x.bin");
        let url = format!("http://127.0.0.1:{port}/x.bin");
        let r = download(&sb, &url, &dest, &[]);
        r.expect(11);
        assert!(
            r.stderr.contains("DNS or connection failure"),
            "{tool}: {}",
            r.stderr
        );
    }
}

#[test]
fn not_enough_disk_space_is_exit_13_before_any_transfer() {
    let sb = Sandbox::with_tools(&["curl"]);
    let server = serve(
        "/huge.img",
        Route {
            body: b"tiny".to_vec(),
            head_length: Some(1 << 60),
            ..Route::default()
        },
    );
    let dest = sb.path("huge.img");
    let r = download(&sb, &server.url("/huge.img"), &dest, &[]);
    r.expect(13);
    assert!(r.stderr.contains("not enough disk space"), "{}", r.stderr);
    assert!(
        gets(&server, "/huge.img").is_empty(),
        "{:?}",
        server.requests()
    );
}

#[test]
fn a_directory_destination_takes_the_file_name_from_the_url() {
    let sb = Sandbox::with_tools(&["curl"]);
    let server = serve("/pkg.deb", payload_route());
    let dir = sb.path("downloads");
    let url = format!("{}?token=abc", server.url("/pkg.deb"));
    // The server sees the query string as part of the path.
    server.route("/pkg.deb?token=abc", payload_route());
    sb.run(
        "download-file.sh",
        &["", &url, &format!("{}/", dir.display())],
    )
    .expect(0);
    assert_eq!(fs::read(dir.join("pkg.deb")).unwrap(), payload());
}

#[test]
fn file_urls_are_copied_without_curl_or_wget() {
    let sb = Sandbox::new();
    let src = sb.path("src.bin");
    fs::write(&src, payload()).unwrap();
    let dest = sb.path("out/copy.bin");
    let url = format!("file://{}", src.display());
    let sha = sha256(&payload());
    download(&sb, &url, &dest, &[&sha]).expect(0);
    assert_eq!(fs::read(&dest).unwrap(), payload());

    let r = sb.run(
        "download-file.sh",
        &[
            "",
            &format!("file://{}", sb.path("nope").display()),
            dest.to_str().unwrap(),
        ],
    );
    r.expect(10);
    assert!(r.stderr.contains("source file not found"), "{}", r.stderr);
}

#[test]
fn http_without_curl_or_wget_is_exit_3() {
    let sb = Sandbox::new();
    let r = sb.run("download-file.sh", &["", "http://127.0.0.1:9/x", "x"]);
    r.expect(3);
    assert!(
        r.stderr.contains("neither curl nor wget is installed"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_server_without_range_support_makes_the_download_start_over() {
    for (tool, mut sb) in downloaders() {
        sb.env("IOTJOBS_DOWNLOAD_ATTEMPTS", "1");
        let server = serve(
            "/fw.bin",
            Route {
                no_range: true,
                ..cut_route(tool, 40_000)
            },
        );
        let dest = sb.path("fw.bin");
        let args = ["", &server.url("/fw.bin"), dest.to_str().unwrap()];
        sb.run("download-file.sh", &args).expect(15);
        let r = sb.run("download-file.sh", &args);
        r.expect(0);
        assert_eq!(fs::read(&dest).unwrap(), payload(), "{tool}: {}", r.stdout);
        assert!(!sb.path("fw.bin.part").exists(), "{tool}");
    }
}

#[test]
fn a_complete_partial_file_is_not_downloaded_again_and_a_bigger_one_is_discarded() {
    let sb = Sandbox::with_tools(&["curl"]);
    let server = serve("/fw.bin", payload_route());
    let dest = sb.path("fw.bin");
    let args = ["", &server.url("/fw.bin"), dest.to_str().unwrap()];

    fs::write(sb.path("fw.bin.part"), payload()).unwrap();
    let r = sb.run("download-file.sh", &args);
    r.expect(0);
    assert!(r.stdout.contains("already complete"), "{}", r.stdout);
    assert!(gets(&server, "/fw.bin").is_empty());
    assert_eq!(fs::read(&dest).unwrap(), payload());

    let mut bigger = payload();
    bigger.extend_from_slice(b"stale tail");
    fs::write(sb.path("fw.bin.part"), bigger).unwrap();
    let r = sb.run("download-file.sh", &args);
    r.expect(0);
    assert!(r.stdout.contains("discarding"), "{}", r.stdout);
    assert_eq!(gets(&server, "/fw.bin")[0].range, None);
    assert_eq!(fs::read(&dest).unwrap(), payload());
}
