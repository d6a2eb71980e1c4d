//! The worker pool against C workers compiled by the tests: results bit-identical to the
//! in-process model for any worker count and chunk size; every failure costs only its rows,
//! with exact counts; start-up failures name the problem; cancellation; and no process is ever
//! left behind (checked in the process table by a marker argument unique to each test).
//!
//! Run: `cargo test -p diffinv-process --test pool` (needs `cc`).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use diffinv_operators::{FnForward, ForwardModel, OperatorError};
use diffinv_process::{
    PoolOptions, PoolStats, ProcessConfig, ProcessError, ProcessForward, WorkerMode,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};

/// The arithmetic of c/examples/example.c, in Rust.
fn example_row(x: &[f32]) -> Vec<f32> {
    let (a, b) = (x[0], x[1]);
    if a.abs() > 1e6 {
        return vec![f32::NAN; 5];
    }
    vec![
        a * b,
        a + 2.0 * b,
        a * a - b,
        (a - b) / (1.0 + a * a),
        b * b * b - 0.5 * a,
    ]
}

fn example_cfg(marker: &str, workers: usize, chunk: Option<usize>) -> ProcessConfig {
    let exe = c_program("c/examples/example.c");
    let mut c = ProcessConfig::new(vec![exe.display().to_string(), marker.into()], 2, 5);
    c.workers = Some(workers);
    c.chunk_rows = chunk;
    c.timeout_s = 10.0;
    c
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn c_example_is_bit_identical_to_the_in_process_model_for_any_workers_and_chunks() {
    let mk = marker("bitident");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut x = Array2::<f32>::zeros((97, 2));
    x.mapv_inplace(|_| rng.random_range(-3.0f32..3.0));
    x[[10, 0]] = 2e6; // fails in both
    let reference = FnForward::new(2, 5, example_row)
        .forward_partial(x.view())
        .unwrap();
    assert_eq!(reference.failures.len(), 1);
    for workers in [1, 2, 3] {
        for chunk in [None, Some(1), Some(7), Some(500)] {
            let pool =
                ProcessForward::start(&example_cfg(&mk, workers, chunk), PoolOptions::default())
                    .unwrap();
            assert_eq!(pool.input_shape(), vec![2]);
            assert_eq!(pool.output_shape(), vec![5]);
            let out = pool.forward_partial(x.view()).unwrap();
            assert_eq!(
                bits(&out.y),
                bits(&reference.y),
                "workers {workers}, chunk {chunk:?}"
            );
            assert_eq!(out.failures.len(), 1);
            assert_eq!(out.failures[0].row, 10);
            assert!(out.failures[0]
                .reason
                .contains("returned NaN at output index 0"));
            // `forward` names the failed row.
            match pool.forward(x.view()) {
                Err(OperatorError::SampleFailed { row: 10, .. }) => {}
                other => panic!("{other:?}"),
            }
            let y = pool.forward(x.slice(ndarray::s![..10, ..])).unwrap();
            assert_eq!(
                bits(&y),
                bits(&reference.y.slice(ndarray::s![..10, ..]).to_owned())
            );
            let s = pool.stats();
            let calls = match chunk {
                None => 3 * workers.min(97) as u64,
                Some(c) => (97usize.div_ceil(c) * 2 + 10usize.div_ceil(c)) as u64,
            };
            assert_eq!(s.batches, 3);
            assert_eq!(s.rows, 97 * 2 + 10);
            assert_eq!(s.failed_rows, 2);
            if chunk.is_some() {
                assert_eq!(s.calls, calls, "workers {workers}, chunk {chunk:?}");
            }
            assert_eq!(
                (s.crashes, s.restarts, s.timeouts, s.malformed_replies),
                (0, 0, 0, 0)
            );
            pool.shutdown().unwrap();
            assert_gone(&mk);
        }
    }
}

#[test]
fn large_batches_stream_through_the_pipes() {
    // 200 000 rows: 1.6 MB in, 4 MB out per call, far past the pipe buffers.
    let mk = marker("large");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut x = Array2::<f32>::zeros((200_000, 2));
    x.mapv_inplace(|_| rng.random_range(-3.0f32..3.0));
    let reference = FnForward::new(2, 5, example_row).forward(x.view()).unwrap();
    let pool = ProcessForward::start(&example_cfg(&mk, 2, None), PoolOptions::default()).unwrap();
    let y = pool.forward(x.view()).unwrap();
    assert_eq!(bits(&y), bits(&reference));
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn config_parses_with_defaults_and_validation_names_the_key() {
    let c: ProcessConfig = toml::from_str(
        r#"command = ["python3", "sim.py"]
in_dim = 2
out_dim = 5"#,
    )
    .unwrap();
    assert_eq!(
        c,
        ProcessConfig::new(vec!["python3".into(), "sim.py".into()], 2, 5)
    );
    assert_eq!(
        (c.timeout_s, c.max_restarts, c.mode),
        (60.0, 3, WorkerMode::Persistent)
    );
    c.validate().unwrap();
    let full: ProcessConfig = toml::from_str(
        r#"command = ["./sim", "{input}", "{output}"]
in_dim = 3
out_dim = 1
workers = 4
timeout_s = 2.5
mode = "files"
chunk_rows = 8
max_restarts = 5
env = { OMP_NUM_THREADS = "1" }"#,
    )
    .unwrap();
    full.validate().unwrap();
    assert_eq!(full.mode, WorkerMode::Files);
    assert_eq!(full.env["OMP_NUM_THREADS"], "1");
    let e =
        toml::from_str::<ProcessConfig>("command = [\"a\"]\nin_dim = 1\nout_dim = 1\ntimeout = 3")
            .unwrap_err();
    assert!(e.to_string().contains("unknown field `timeout`"), "{e}");
    // As the `[forward]` table of a run's config file, beside its `kind` key (an internally
    // tagged enum): unknown keys are still refused.
    #[derive(serde::Deserialize, Debug)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Forward {
        Process(ProcessConfig),
    }
    #[derive(serde::Deserialize, Debug)]
    struct RunFile {
        forward: Forward,
    }
    let f: RunFile = toml::from_str(
        "[forward]\nkind = \"process\"\ncommand = [\"./sim\"]\nin_dim = 2\nout_dim = 1\nworkers = 3",
    )
    .unwrap();
    let Forward::Process(p) = f.forward;
    assert_eq!((p.workers, p.in_dim), (Some(3), 2));
    let e = toml::from_str::<RunFile>(
        "[forward]\nkind = \"process\"\ncommand = [\"./sim\"]\nin_dim = 2\nout_dim = 1\nworker = 3",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `worker`"), "{e}");
    let base = || ProcessConfig::new(vec!["sim".into()], 2, 1);
    let cases: Vec<(ProcessConfig, &str, &str)> = vec![
        (ProcessConfig::new(vec![], 2, 1), "command", "is empty"),
        (
            ProcessConfig {
                in_dim: 0,
                ..base()
            },
            "in_dim",
            "at least 1",
        ),
        (
            ProcessConfig {
                out_dim: 0,
                ..base()
            },
            "out_dim",
            "at least 1",
        ),
        (
            ProcessConfig {
                workers: Some(0),
                ..base()
            },
            "workers",
            "at least 1",
        ),
        (
            ProcessConfig {
                timeout_s: 0.0,
                ..base()
            },
            "timeout_s",
            "> 0",
        ),
        (
            ProcessConfig {
                timeout_s: f64::NAN,
                ..base()
            },
            "timeout_s",
            "finite",
        ),
        (
            ProcessConfig {
                chunk_rows: Some(0),
                ..base()
            },
            "chunk_rows",
            "at least 1",
        ),
        (
            ProcessConfig {
                max_restarts: 0,
                ..base()
            },
            "max_restarts",
            "at least 1",
        ),
        (
            ProcessConfig {
                command: vec!["sim".into(), "{input}".into()],
                ..base()
            },
            "command",
            "mode = \"files\"",
        ),
        (
            ProcessConfig {
                env: [("DIFFINV_WORKER_ID".to_string(), "3".to_string())].into(),
                ..base()
            },
            "env",
            "cannot be overridden",
        ),
    ];
    for (c, key, what) in cases {
        let e = c.validate().unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, ProcessError::Config { key: k, .. } if *k == key) && msg.contains(what),
            "{key}: {msg}"
        );
        assert!(
            msg.starts_with(&format!("invalid forward.{key}: ")),
            "{msg}"
        );
        // start refuses it before spawning anything.
        assert_eq!(
            ProcessForward::start(&c, PoolOptions::default()).unwrap_err(),
            e
        );
    }
}

#[test]
fn start_failures_name_the_problem_and_quote_stderr() {
    let mk = marker("startfail");
    let start = |mode: &str, timeout: f64| {
        let mut c = fault_cfg(mode, &mk, 2);
        c.timeout_s = timeout;
        ProcessForward::start(&c, PoolOptions::default())
            .map(|_| ())
            .unwrap_err()
    };
    let one_line = |e: &ProcessError| {
        let m = e.to_string();
        assert!(!m.contains('\n'), "{m}");
        m
    };
    let t0 = Instant::now();
    let e = start("nohello", 0.5);
    let m = one_line(&e);
    assert!(matches!(e, ProcessError::Hello { .. }), "{m}");
    assert!(
        m.contains("no hello line on stdout within timeout_s = 0.5 s"),
        "{m}"
    );
    assert!(m.contains("fault: starting in mode nohello"), "{m}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    let m = one_line(&start("version", 5.0));
    assert!(
        m.contains("protocol version 2") && m.contains("speaks version 1"),
        "{m}"
    );
    let m = one_line(&start("dims", 5.0));
    assert!(
        m.contains("in_dim = 3, out_dim = 2")
            && m.contains("configuration has in_dim = 1, out_dim = 2"),
        "{m}"
    );
    let m = one_line(&start("banner", 5.0));
    assert!(
        m.contains("\"Loading mesh...\"") && m.contains("print anything else to stderr"),
        "{m}"
    );
    let m = one_line(&start("exit", 5.0));
    assert!(
        m.contains("exited with status 1 before its hello line")
            && m.contains("fault: cannot load mesh.dat"),
        "{m}"
    );
    assert_gone(&mk);

    // A program that does not exist, relative to base_dir.
    let dir = fresh_dir("startfail");
    let c = ProcessConfig::new(vec!["./no-such-simulator".into(), mk.clone()], 1, 2);
    let e = ProcessForward::start(
        &c,
        PoolOptions {
            base_dir: dir.clone(),
            ..Default::default()
        },
    )
    .unwrap_err();
    let m = one_line(&e);
    assert!(matches!(e, ProcessError::Spawn { worker: 0, .. }), "{m}");
    assert!(
        m.contains(&dir.join("no-such-simulator").display().to_string()),
        "{m}"
    );
    assert!(m.contains("no such program"), "{m}");
    // A file that is not executable.
    std::fs::write(dir.join("sim.py"), "print('hi')\n").unwrap();
    let c = ProcessConfig::new(vec!["./sim.py".into()], 1, 2);
    let m = ProcessForward::start(
        &c,
        PoolOptions {
            base_dir: dir.clone(),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("chmod +x"), "{m}");
    // An unwritable log.
    let e = ProcessForward::start(
        &fault_cfg("ok", &mk, 1),
        PoolOptions {
            log: Some(dir.join("no/such/folder/workers.log")),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot open the worker log"), "{e}");
    assert_gone(&mk);
}

#[test]
fn nan_and_inf_rows_fail_alone() {
    let mk = marker("nan");
    let pool = ProcessForward::start(&fault_cfg("ok", &mk, 1), PoolOptions::default()).unwrap();
    let out = pool
        .forward_partial(column(&[1.0, 7.0, 2.0, 8.0, 3.0]).view())
        .unwrap();
    let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, vec![1, 3]);
    assert!(out.failures[0]
        .reason
        .contains("worker 0 returned NaN at output index 0"));
    assert!(out.failures[1]
        .reason
        .contains("returned inf at output index 1"));
    assert_eq!(out.y.row(0).to_vec(), vec![2.0, 2.0]);
    assert!(out.y.row(1).iter().all(|v| v.is_nan()) && out.y.row(3).iter().all(|v| v.is_nan()));
    assert_eq!(out.y.row(4).to_vec(), vec![6.0, 4.0]);
    assert_eq!(
        pool.stats(),
        PoolStats {
            batches: 1,
            calls: 1,
            rows: 5,
            failed_rows: 2,
            ..Default::default()
        }
    );
    // Empty batches are answered without a call; wrong widths and NaN inputs are refused.
    assert_eq!(
        pool.forward(Array2::zeros((0, 1)).view()).unwrap().dim(),
        (0, 2)
    );
    assert!(matches!(
        pool.forward(Array2::zeros((2, 3)).view()),
        Err(OperatorError::Shape { .. })
    ));
    assert!(matches!(
        pool.forward(column(&[f32::NAN]).view()),
        Err(OperatorError::NonFiniteInput { row: 0, .. })
    ));
    assert_eq!(pool.stats().calls, 1);
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn a_crash_fails_only_its_chunk_and_the_worker_is_restarted() {
    let mk = marker("crash");
    // One worker, so that which worker takes which chunk (and so the restarts) is fixed.
    let mut c = fault_cfg("ok", &mk, 1);
    c.chunk_rows = Some(2);
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    // The crash is in the last chunk handed out, so no restart happens within this call.
    let x = column(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 13.0, 7.5]);
    let out = pool.forward_partial(x.view()).unwrap();
    let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, vec![6, 7]);
    let r = &out.failures[0].reason;
    assert!(
        r.contains("crashed on rows 6..8 (exited with status 3)")
            && r.contains("fault: boom on 13"),
        "{r}"
    );
    for i in 0..6 {
        assert_eq!(out.y[[i, 0]], 2.0 * x[[i, 0]]);
    }
    let s = pool.stats();
    assert_eq!(
        (s.crashes, s.restarts, s.failed_rows, s.calls),
        (1, 0, 2, 4)
    );
    // The next call restarts the worker and succeeds; a segfault is named.
    let y = pool.forward(column(&[1.0, 2.0, 3.0, 4.0]).view()).unwrap();
    assert_eq!(y.column(1).to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
    assert_eq!(pool.stats().restarts, 1);
    let out = pool.forward_partial(column(&[31.0]).view()).unwrap();
    assert!(
        out.failures[0].reason.contains("signal 11 (SIGSEGV)"),
        "{}",
        out.failures[0].reason
    );
    let s = pool.stats();
    assert_eq!((s.crashes, s.failed_rows, s.batches), (2, 3, 3));
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_never_blocks_the_other_workers() {
    let mk = marker("timeout");
    let mut c = fault_cfg("ok", &mk, 2);
    c.chunk_rows = Some(1);
    c.timeout_s = 0.7;
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    // Row 0 forks a child and hangs; the 40 other rows are served by the other worker meanwhile.
    let mut v = vec![667.0f32];
    v.extend((1..=40).map(|i| i as f32 + 100.0));
    let t0 = Instant::now();
    let out = pool.forward_partial(column(&v).view()).unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].row, 0);
    let r = &out.failures[0].reason;
    assert!(
        r.contains("did not answer rows 0..1 within timeout_s = 0.7 s")
            && r.contains("fault: forked a child, hanging"),
        "{r}"
    );
    for (i, vi) in v.iter().enumerate().skip(1) {
        assert_eq!(out.y[[i, 1]], vi + 1.0);
    }
    // The hung worker and its child are gone: every process left is a live worker of ours.
    std::thread::sleep(Duration::from_millis(100));
    let left = alive(&mk);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left.iter().all(|&(_, ppid)| ppid == std::process::id()),
        "{left:?}"
    );
    // A plain hang too, then the pool goes on.
    let out = pool.forward_partial(column(&[666.0, 1.0]).view()).unwrap();
    assert_eq!(out.failures.len(), 1);
    let s = pool.stats();
    assert_eq!(
        (s.timeouts, s.restarts, s.crashes, s.failed_rows),
        (2, 1, 0, 2)
    );
    assert_eq!(s.calls, 43);
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn malformed_replies_fail_the_call_and_restart_the_worker() {
    let mk = marker("malformed");
    let mut c = fault_cfg("ok", &mk, 1);
    c.chunk_rows = Some(2);
    c.max_restarts = 10;
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    let x = column(&[1.0, 21.0, 2.0, 3.0, 22.0, 4.0, 5.0, 6.0, 24.0, 7.5]);
    let out = pool.forward_partial(x.view()).unwrap();
    let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, vec![0, 1, 4, 5, 8, 9]);
    let r0 = &out.failures[0].reason;
    assert!(
        r0.contains("malformed reply on rows 0..2: the reply has rows = 3, out_dim = 2; the call has rows = 2")
            && r0.contains("fault: starting in mode ok"),
        "{r0}"
    );
    let r4 = &out.failures[2].reason;
    assert!(
        r4.contains("\"garbage!\"") && r4.contains("print anything else to stderr"),
        "{r4}"
    );
    let r8 = &out.failures[4].reason;
    assert!(r8.contains("longer than 65536 bytes"), "{r8}");
    assert_eq!(out.y.row(2).to_vec(), vec![4.0, 3.0]);
    let s = pool.stats();
    assert_eq!(
        (s.malformed_replies, s.restarts, s.calls, s.failed_rows),
        (3, 2, 5, 6)
    );
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn an_error_reply_fails_the_call_and_keeps_the_worker() {
    let mk = marker("errreply");
    let mut c = fault_cfg("ok", &mk, 1);
    c.chunk_rows = Some(2);
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    let before = alive(&mk);
    let out = pool
        .forward_partial(column(&[1.0, 2.0, 23.0, 3.0]).view())
        .unwrap();
    assert_eq!(out.failures.len(), 2);
    assert_eq!(
        out.failures[0].reason,
        "worker 0 reported an error: value 23 is \"unlucky\""
    );
    assert_eq!(alive(&mk), before, "the worker must stay up");
    let s = pool.stats();
    assert_eq!(
        (s.error_replies, s.restarts, s.crashes, s.failed_rows),
        (1, 0, 0, 2)
    );
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn a_worker_failing_max_restarts_times_in_a_row_stops_the_pool() {
    let mk = marker("stop");
    let mut c = fault_cfg("ok", &mk, 1);
    c.max_restarts = 2;
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    // A success in between resets the count.
    for v in [13.0, 1.0, 13.0] {
        pool.forward_partial(column(&[v]).view()).unwrap();
    }
    let e = pool.forward_partial(column(&[13.0]).view()).unwrap_err();
    let OperatorError::Stopped(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("worker 0 failed 2 times in a row (max_restarts = 2)")
            && m.contains("fault: boom on 13"),
        "{m}"
    );
    // Refused from now on, with the same reason; the worker is gone already.
    assert_eq!(pool.forward_partial(column(&[1.0]).view()).unwrap_err(), e);
    assert_gone(&mk);
    let s = pool.stats();
    assert_eq!(
        (s.crashes, s.restarts, s.failed_rows, s.batches),
        (3, 2, 2, 4)
    );
    drop(pool);
}

#[test]
fn a_restart_that_cannot_say_hello_counts_as_a_failure() {
    let mk = marker("once");
    let dir = fresh_dir("once");
    let mut c = fault_cfg("once", &mk, 1);
    c.command.push(dir.join("state").display().to_string());
    c.max_restarts = 3;
    let log = dir.join("workers.log");
    let pool = ProcessForward::start(
        &c,
        PoolOptions {
            log: Some(log.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let out = pool.forward_partial(column(&[13.0]).view()).unwrap();
    assert_eq!(out.failures.len(), 1);
    let e = pool.forward_partial(column(&[1.0]).view()).unwrap_err();
    let OperatorError::Stopped(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("failed 3 times in a row")
            && m.contains("restart failed")
            && m.contains("exited with status 4 before its hello line")
            && m.contains("fault: restart refused"),
        "{m}"
    );
    let s = pool.stats();
    assert_eq!((s.crashes, s.restarts, s.calls), (1, 2, 1));
    drop(pool);
    assert_gone(&mk);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[worker 0] fault: boom on 13"), "{text}");
    assert_eq!(
        text.matches("[worker 0] fault: restart refused").count(),
        2,
        "{text}"
    );
}

#[test]
fn a_worker_that_dies_between_calls_is_replaced_before_the_next_one() {
    let mk = marker("idle");
    let pool =
        ProcessForward::start(&fault_cfg("idle-exit", &mk, 1), PoolOptions::default()).unwrap();
    for _ in 0..2 {
        let y = pool.forward(column(&[1.0, 2.0]).view()).unwrap();
        assert_eq!(y.column(0).to_vec(), vec![2.0, 4.0]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = pool.stats();
    assert_eq!(
        (s.crashes, s.restarts, s.failed_rows, s.calls),
        (1, 1, 0, 2)
    );
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn environment_working_directory_and_log() {
    let mk = marker("env");
    let dir = fresh_dir("env");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(fault(), dir.join("bin/fault")).unwrap();
    std::fs::write(dir.join("probe.txt"), "").unwrap();
    let mut c = ProcessConfig::new(vec!["bin/fault".into(), "env".into(), mk.clone()], 1, 2);
    c.workers = Some(3);
    c.chunk_rows = Some(1);
    c.env.insert("FAULT_EXTRA".into(), "5".into());
    let log = dir.join("workers.log");
    let pool = ProcessForward::start(
        &c,
        PoolOptions {
            base_dir: dir.clone(),
            log: Some(log.clone()),
            cancel: None,
        },
    )
    .unwrap();
    assert_eq!(pool.workers(), 3);
    // Workers start with no blocked signals and SIGPIPE at its default (the pool's threads
    // block SIGPIPE for themselves only).
    for (pid, _) in alive(&mk) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{status}");
        assert_eq!(
            field("SigIgn:") & (1 << (13 - 1)),
            0,
            "SIGPIPE ignored: {status}"
        );
    }
    let y = pool.forward(column(&[0.0; 30]).view()).unwrap();
    assert!(
        y.column(0).iter().all(|&id| [0.0, 1.0, 2.0].contains(&id)),
        "{y}"
    );
    assert!(y.column(1).iter().all(|&v| v == 1005.0), "{y}");
    pool.shutdown().unwrap();
    assert_gone(&mk);
    let text = std::fs::read_to_string(&log).unwrap();
    for k in 0..3 {
        assert!(
            text.contains(&format!("[worker {k}] fault: starting in mode env\n")),
            "{text}"
        );
    }
}

#[test]
fn cancel_interrupts_a_call_at_once_and_the_pool_refuses_more() {
    let mk = marker("cancel");
    let flag = Arc::new(AtomicBool::new(false));
    let mut c = fault_cfg("ok", &mk, 2);
    c.timeout_s = 30.0;
    let pool = ProcessForward::start(
        &c,
        PoolOptions {
            cancel: Some(Arc::clone(&flag)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(alive(&mk).len(), 2);
    let setter = {
        let flag = Arc::clone(&flag);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
            Instant::now()
        })
    };
    // One worker hangs (with a child), the other finishes its chunk at once and idles.
    let e = pool
        .forward_partial(column(&[667.0, 1.0]).view())
        .unwrap_err();
    let returned = Instant::now();
    let set_at = setter.join().unwrap();
    assert_eq!(e, OperatorError::Interrupted);
    let latency = returned - set_at;
    eprintln!("cancellation latency: {latency:?}");
    assert!(latency < Duration::from_millis(250), "{latency:?}");
    // Every worker (the idle one too) and the forked child are killed.
    assert_gone(&mk);
    assert_eq!(
        pool.forward_partial(column(&[1.0]).view()).unwrap_err(),
        OperatorError::Interrupted
    );
    drop(pool);
    assert_gone(&mk);

    // A flag already set: the first call refuses and stops the workers.
    let mk = marker("cancel-before");
    let flag = Arc::new(AtomicBool::new(false));
    let pool = ProcessForward::start(
        &fault_cfg("ok", &mk, 2),
        PoolOptions {
            cancel: Some(Arc::clone(&flag)),
            ..Default::default()
        },
    )
    .unwrap();
    flag.store(true, Ordering::SeqCst);
    assert_eq!(
        pool.forward(column(&[1.0]).view()).unwrap_err(),
        OperatorError::Interrupted
    );
    assert_gone(&mk);
    assert_eq!(pool.stats().calls, 0);
    drop(pool);
}

#[test]
fn concurrent_calls_from_two_threads_are_both_answered() {
    let mk = marker("concurrent");
    let mut c = fault_cfg("ok", &mk, 2);
    c.chunk_rows = Some(3);
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    for rep in 0..5 {
                        let v: Vec<f32> = (0..20)
                            .map(|i| (t * 1000 + rep * 20 + i) as f32 + 0.5)
                            .collect();
                        let y = pool.forward(column(&v).view()).unwrap();
                        let want: Vec<f32> = v.iter().map(|a| a + 1.0).collect();
                        assert_eq!(y.column(1).to_vec(), want);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(pool.stats().rows, 200);
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn no_process_is_left_behind_on_drop_shutdown_error_or_panic() {
    let mk = marker("leftover");
    let cfg = fault_cfg("ok", &mk, 3);
    // Shutdown and drop.
    let pool = ProcessForward::start(&cfg, PoolOptions::default()).unwrap();
    assert_eq!(alive(&mk).len(), 3);
    pool.shutdown().unwrap();
    assert!(alive(&mk).is_empty());
    let pool = ProcessForward::start(&cfg, PoolOptions::default()).unwrap();
    pool.forward(column(&[1.0]).view()).unwrap();
    drop(pool);
    assert!(alive(&mk).is_empty());
    // A start that fails for one worker stops the others.
    let mut c = cfg.clone();
    c.command[1] = "nohello".into();
    c.timeout_s = 0.3;
    ProcessForward::start(&c, PoolOptions::default()).unwrap_err();
    assert!(alive(&mk).is_empty());
    // Panic unwinding through a pool with a hung call's worker killed and live workers.
    let r = std::panic::catch_unwind(|| {
        let mut c = cfg.clone();
        c.timeout_s = 0.3;
        let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
        let _ = pool.forward_partial(column(&[667.0, 1.0, 2.0]).view());
        assert_eq!(alive(&mk).len(), 2);
        panic!("simulated failure in the caller");
    });
    assert!(r.is_err());
    assert_gone(&mk);
}

/// Not a test of its own: the body of the process that `a_sigkilled_owner_leaves_no_worker`
/// starts and kills.
#[test]
#[ignore = "helper process of a_sigkilled_owner_leaves_no_worker"]
fn sigkill_helper() {
    let Ok(mk) = std::env::var("DIFFINV_PROCESS_TEST_MARKER") else {
        return;
    };
    let exe = std::env::var("DIFFINV_PROCESS_TEST_FAULT").unwrap();
    let mut c = ProcessConfig::new(vec![exe, "ok".into(), mk], 1, 2);
    c.workers = Some(2);
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    pool.forward(column(&[1.0]).view()).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_sigkilled_owner_leaves_no_worker() {
    let mk = marker("sigkill");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_helper",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("DIFFINV_PROCESS_TEST_MARKER", &mk)
        .env("DIFFINV_PROCESS_TEST_FAULT", fault())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("READY") => break,
            Some(_) => {}
            None => panic!("helper ended before READY: {:?}", child.wait()),
        }
    }
    let workers = alive(&mk);
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.iter().all(|&(_, ppid)| ppid == child.id()));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_gone(&mk);
}

#[test]
fn files_mode_runs_one_process_per_chunk() {
    let mk = marker("files");
    let exe = c_program("tests/workers/files_worker.c");
    let dir = fresh_dir("files");
    let cfg = |mode: &str| {
        let mut c = ProcessConfig::new(
            vec![
                exe.display().to_string(),
                "{input}".into(),
                "{output}".into(),
                mode.into(),
                mk.clone(),
            ],
            1,
            2,
        );
        c.mode = WorkerMode::Files;
        c.workers = Some(2);
        c.chunk_rows = Some(2);
        c.timeout_s = 1.0;
        c
    };
    let log = dir.join("workers.log");
    let opts = || PoolOptions {
        log: Some(log.clone()),
        ..Default::default()
    };
    for mode in ["f32", "f64"] {
        let pool = ProcessForward::start(&cfg(mode), opts()).unwrap();
        let out = pool
            .forward_partial(column(&[1.0, 2.0, 7.0, 3.0, 13.0, 4.0, 5.0]).view())
            .unwrap();
        let rows: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
        assert_eq!(rows, vec![2, 4, 5], "{:?}", out.failures);
        assert!(out.failures[0].reason.contains("returned NaN"));
        let r = &out.failures[1].reason;
        assert!(
            r.contains("exited with status 2 on rows 4..6")
                && r.contains("files_worker: boom on 13"),
            "{r}"
        );
        assert_eq!(out.y.row(1).to_vec(), vec![4.0, 3.0]);
        assert_eq!(out.y.row(6).to_vec(), vec![10.0, 6.0]);
        let s = pool.stats();
        assert_eq!(
            (s.calls, s.rows, s.crashes, s.failed_rows, s.restarts),
            (4, 7, 1, 3, 0)
        );
        pool.shutdown().unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("] files_worker: stdout goes to the log too"),
        "{text}"
    );
    // Missing or wrong outputs are malformed replies.
    let pool = ProcessForward::start(&cfg("noout"), opts()).unwrap();
    let out = pool.forward_partial(column(&[1.0]).view()).unwrap();
    assert!(out.failures[0]
        .reason
        .contains("exited with status 0 on rows 0..1 but wrote no output file"));
    drop(pool);
    let pool = ProcessForward::start(&cfg("shape"), opts()).unwrap();
    let out = pool.forward_partial(column(&[1.0, 2.0]).view()).unwrap();
    assert!(
        out.failures[0]
            .reason
            .contains("shape [2, 3], expected [2, 2]"),
        "{:?}",
        out.failures
    );
    assert_eq!(pool.stats().malformed_replies, 1);
    drop(pool);
    // A hang with a forked child: timeout, group killed.
    let pool = ProcessForward::start(&cfg("f32"), opts()).unwrap();
    let out = pool
        .forward_partial(column(&[667.0, 1.0, 2.0]).view())
        .unwrap();
    assert_eq!(out.failures.len(), 2);
    assert!(out.failures[0].reason.contains("within timeout_s = 1 s"));
    assert_eq!(pool.stats().timeouts, 1);
    assert_gone(&mk);
    drop(pool);
    // The exchange folder is gone, and a missing program fails at start.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("diffinv-process-{}-", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mut c = cfg("f32");
    c.command[0] = "./missing".into();
    let e = ProcessForward::start(&c, opts()).unwrap_err();
    assert!(
        matches!(e, ProcessError::Spawn { .. }) && e.to_string().contains("no such program"),
        "{e}"
    );
    assert_gone(&mk);
}
