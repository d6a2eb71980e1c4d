//! The pool with Python workers (`crates/process/python`): the helper's example simulator is
//! bit-identical to itself for any worker count and chunk size, an exception is an error reply
//! that keeps the worker up, `print` goes to the log, and `files` mode works with `np.load`/
//! `np.save`.
//!
//! Run: `DIFFINV_PYTHON=path/to/python3 cargo test -p diffinv-process --test python` (numpy
//! needed); skipped without `DIFFINV_PYTHON` unless `DIFFINV_REQUIRE_PYTHON=1`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use diffinv_operators::ForwardModel;
use diffinv_process::{PoolOptions, ProcessConfig, ProcessForward, WorkerMode};
use ndarray::Array2;
use rand::{Rng, SeedableRng};

fn simulator_cfg(py: &str, marker: &str, workers: usize, chunk: Option<usize>) -> ProcessConfig {
    let mut c = ProcessConfig::new(
        vec![
            py.into(),
            crate_dir()
                .join("python/examples/simulator.py")
                .display()
                .to_string(),
            marker.into(),
        ],
        2,
        5,
    );
    c.workers = Some(workers);
    c.chunk_rows = chunk;
    c.timeout_s = 30.0;
    c.env.insert(
        "PYTHONPATH".into(),
        crate_dir().join("python").display().to_string(),
    );
    c
}

#[test]
fn python_worker_is_bit_identical_for_any_worker_count_and_chunk_size() {
    let Some(py) = python() else { return };
    let mk = marker("py-bits");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut x = Array2::<f32>::zeros((60, 2));
    x.mapv_inplace(|_| rng.random_range(-3.0f32..3.0));
    x[[5, 0]] = -500.0; // a NaN row
    x[[41, 0]] = -200.0;
    let mut first: Option<(Vec<u32>, Vec<usize>)> = None;
    for (workers, chunk) in [(1, None), (3, None), (2, Some(7)), (3, Some(1))] {
        let pool = ProcessForward::start(
            &simulator_cfg(&py, &mk, workers, chunk),
            PoolOptions::default(),
        )
        .unwrap();
        let out = pool.forward_partial(x.view()).unwrap();
        let bits: Vec<u32> = out.y.iter().map(|v| v.to_bits()).collect();
        let failed: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
        assert_eq!(failed, vec![5, 41]);
        match &first {
            None => {
                // Spot-check the values against the formula.
                let (a, b) = (x[[0, 0]], x[[0, 1]]);
                assert_eq!(out.y[[0, 0]], a * b);
                assert_eq!(out.y[[0, 1]], a + 2.0 * b);
                first = Some((bits, failed));
            }
            Some((b0, _)) => assert_eq!(&bits, b0, "workers {workers}, chunk {chunk:?}"),
        }
        pool.shutdown().unwrap();
        assert_gone(&mk);
    }
}

#[test]
fn python_exception_is_an_error_reply_and_print_goes_to_the_log() {
    let Some(py) = python() else { return };
    let mk = marker("py-exc");
    let dir = fresh_dir("py-exc");
    let log = dir.join("workers.log");
    let pool = ProcessForward::start(
        &simulator_cfg(&py, &mk, 1, Some(2)),
        PoolOptions {
            log: Some(log.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let x = ndarray::array![[1.0f32, 2.0], [300.0, 1.0], [2.0, 2.0], [3.0, 1.0]];
    let out = pool.forward_partial(x.view()).unwrap();
    let failed: Vec<usize> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(failed, vec![0, 1]);
    assert_eq!(
        out.failures[0].reason,
        "worker 0 reported an error: ValueError: x0 out of range: 300"
    );
    assert_eq!(out.y[[2, 0]], 4.0);
    let s = pool.stats();
    assert_eq!(
        (s.error_replies, s.restarts, s.crashes, s.failed_rows),
        (1, 0, 0, 2)
    );
    pool.shutdown().unwrap();
    assert_gone(&mk);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[worker 0] evaluating 2 rows"), "{text}");
}

#[test]
fn python_files_mode_with_np_load_and_np_save() {
    let Some(py) = python() else { return };
    let mk = marker("py-files");
    let script = "import sys, numpy as np\n\
                  x = np.load(sys.argv[1])\n\
                  np.save(sys.argv[2], np.stack([2 * x[:, 0], x[:, 0] + 1], axis=1).astype(np.float64))\n";
    let mut c = ProcessConfig::new(
        vec![
            py,
            "-c".into(),
            script.into(),
            "{input}".into(),
            "{output}".into(),
            mk.clone(),
        ],
        1,
        2,
    );
    c.mode = WorkerMode::Files;
    c.workers = Some(2);
    c.chunk_rows = Some(3);
    c.timeout_s = 30.0;
    let pool = ProcessForward::start(&c, PoolOptions::default()).unwrap();
    let y = pool
        .forward(column(&[1.0, 2.0, 3.0, 4.0, 5.5]).view())
        .unwrap();
    assert_eq!(y.column(0).to_vec(), vec![2.0, 4.0, 6.0, 8.0, 11.0]);
    assert_eq!(y.column(1).to_vec(), vec![2.0, 3.0, 4.0, 5.0, 6.5]);
    assert_eq!(pool.stats().calls, 2);
    drop(pool);
    assert_gone(&mk);
}

#[test]
fn python_writes_to_file_descriptor_1_cannot_corrupt_the_protocol() {
    let Some(py) = python() else { return };
    let mk = marker("py-fd1");
    let dir = fresh_dir("py-fd1");
    let script = "import os, subprocess, numpy as np\n\
                  from diffinv_worker import serve\n\
                  def f(x):\n    \
                      os.write(1, b'noise from the C level\\n')\n    \
                      subprocess.run(['echo', 'noise from a child process'])\n    \
                      return np.stack([2 * x[:, 0], x[:, 0] + 1], axis=1)\n\
                  serve(f, 1, 2)\n";
    let mut c = ProcessConfig::new(vec![py, "-c".into(), script.into(), mk.clone()], 1, 2);
    c.workers = Some(1);
    c.timeout_s = 30.0;
    c.env.insert(
        "PYTHONPATH".into(),
        crate_dir().join("python").display().to_string(),
    );
    let log = dir.join("workers.log");
    let pool = ProcessForward::start(
        &c,
        PoolOptions {
            log: Some(log.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        let y = pool.forward(column(&[1.0, 2.0]).view()).unwrap();
        assert_eq!(y.column(0).to_vec(), vec![2.0, 4.0]);
    }
    assert_eq!(pool.stats().malformed_replies, 0);
    pool.shutdown().unwrap();
    assert_gone(&mk);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("[worker 0] noise from the C level").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("[worker 0] noise from a child process")
            .count(),
        2,
        "{text}"
    );
}
