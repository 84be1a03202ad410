//! The HTML report as a person opens it: `tracer report --format html` of a trace recorded
//! on a real kernel, rendered by a real browser (headless Chromium). The page must load
//! without a console message (its Content-Security-Policy turns any attempt to load
//! something from elsewhere into one), show every socket with its timeline, and draw them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::tracer::{run_json, run_ok};

const TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tracer/tests/data/scenarios.jsonl"
);

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What headless Chromium printed, and whether it succeeded.
struct Browser {
    stdout: String,
    /// The page's console messages (errors, refused loads), one per line.
    console: Vec<String>,
}

/// Runs headless Chromium on `page` with `args`, in a profile of its own, within a deadline.
fn chromium(page: &Path, args: &[&str]) -> Browser {
    let name = page.file_stem().unwrap().to_string_lossy().into_owned() + &args.len().to_string();
    let profile = scratch().join(format!("profile-{name}"));
    let _ = std::fs::remove_dir_all(&profile);
    // To files, not pipes: the DOM alone is larger than a pipe holds.
    let (out_path, err_path) = (
        scratch().join(format!("{name}.out")),
        scratch().join(format!("{name}.err")),
    );
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("chromium (the tests install it: cargo xtask test)");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    let _ = std::fs::remove_dir_all(&profile);
    Browser {
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}

/// Pixels of `rgb` in an RGB(A) PNG, and its size.
fn count_pixels(png_path: &Path, rgb: [u8; 3]) -> (usize, u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let n = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p[..3] == rgb)
        .count();
    (n, info.width, info.height)
}

/// Removes the scratch directory, also when the test fails.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_html_report_renders_in_a_browser_with_every_socket_drawn() {
    let dir = scratch();
    let _cleanup = Cleanup(dir.clone());
    let page = dir.join("report.html");
    run_ok([
        "report",
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
        TRACE,
    ]);
    let html = std::fs::read_to_string(&page).unwrap();

    // Self-contained: nothing refers to anything outside the file.
    for outside in [
        "http:", "https:", "<script", "<link", "<img", "<iframe", "@import", "url(", "src=",
    ] {
        assert!(
            !html.contains(outside),
            "the page refers outside itself: {outside}"
        );
    }
    for (i, _) in html.match_indices("href=\"") {
        assert!(html[i + 6..].starts_with('#'), "{}", &html[i..i + 40]);
    }

    // The sockets the report is about, as the JSON report of the same trace lists them.
    let doc = run_json(["report", "--format", "json", TRACE]);
    let sockets: Vec<u64> = doc["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["socket"].as_u64().unwrap())
        .collect();
    assert!(sockets.len() > 40, "{}", sockets.len());

    // What the browser built: no console message, every socket with its drawing.
    let loaded = chromium(&page, &["--dump-dom"]);
    assert_eq!(
        loaded.console,
        Vec::<String>::new(),
        "the page logged errors"
    );
    let dom = loaded.stdout;
    for socket in &sockets {
        assert!(
            dom.contains(&format!("id=\"socket-{socket}\"")),
            "socket {socket} missing from the page"
        );
    }
    // One drawing per socket, plus the chart of verdicts and the legend.
    assert_eq!(dom.matches("<svg").count(), sockets.len() + 2);
    assert!(dom.contains("retries_exhausted") && dom.contains("peer_unresponsive"));

    // The error detection works: the same page loading an image from elsewhere is refused,
    // and says so.
    let tampered = dir.join("tampered.html");
    std::fs::write(
        &tampered,
        html.replacen("<h1>", "<img src=\"http://127.0.0.1:9/x.png\"><h1>", 1),
    )
    .unwrap();
    let refused = chromium(&tampered, &["--dump-dom"]);
    assert!(
        refused
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:?}",
        refused.console
    );

    // The screenshot shows the timelines: state bands, RTO marks and verdict lines.
    let shot = dir.join("report.png");
    let screenshot = chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,2400",
        ],
    );
    assert_eq!(screenshot.console, Vec::<String>::new());
    // The first sockets of this trace are connects: their SYN_SENT bands.
    let (connecting, width, height) = count_pixels(&shot, [0xbc, 0xd7, 0xf5]);
    assert_eq!((width, height), (1100, 2400));
    let (death, ..) = count_pixels(&shot, [0xc8, 0x10, 0x2e]);
    assert!(connecting > 20_000, "SYN_SENT bands: {connecting} pixels");
    assert!(death > 2_000, "verdict lines, RTO marks: {death} pixels");
}
