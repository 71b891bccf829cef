//! Batches and lists: a batch goes in whole or not at all, independent
//! submits in one call each get their own outcome, lists page in queue
//! order (gRPC and CLI), and requests past a size limit are refused.

use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::*;
use tonic::Code;

use super::{ml, on_a_follower, spec, submit_n, Ml};
use crate::support::{code, meta, Cluster, Node, Timings};

/// A batch goes in whole, in order; the queue's depth counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_in_whole_and_in_order_within_the_depth() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    // b holds 5.
    let ids = n3
        .batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    let (code_, _) = code(n2.batch(vec![spec("b", "", ""), spec("b", "", "")]).await);
    assert_eq!(code_, Code::ResourceExhausted);
    assert_eq!(n1.order("b").await, ids);
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Lists page in queue order and carry no bodies; they filter by project;
/// a bad page token or state is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_in_queue_order_and_filter_by_project() {
    let Ml { c, n1, n2, n3, .. } = ml().await;
    let r = n2.submit(spec("", "ml", "r1")).await.unwrap();
    n3.batch((0..4).map(|_| spec("b", "", "")).collect())
        .await
        .unwrap();

    let page = |token: String| ListTasksRequest {
        queue: "b".into(),
        state: "queued".into(),
        page_size: 3,
        page_token: token,
        ..Default::default()
    };
    let first = n2.list(page(String::new())).await.unwrap();
    assert_eq!(first.tasks.len(), 3);
    assert!(
        first.tasks.iter().all(|t| t.command.is_empty()),
        "lists carry no bodies"
    );
    let second = n2.list(page(first.next_page_token.clone())).await.unwrap();
    assert_eq!(second.tasks.len(), 1);
    assert_eq!(second.next_page_token, "");
    let by_project = ListTasksRequest {
        project: "ml".into(),
        ..Default::default()
    };
    let mine = n1.list(by_project).await.unwrap().tasks;
    assert_eq!(mine.iter().map(|t| t.id).collect::<Vec<_>>(), [r.id]);
    let bad_page = ListTasksRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    assert_eq!(code(n1.list(bad_page).await).0, Code::InvalidArgument);
    let bad_state = ListTasksRequest {
        state: "sleeping".into(),
        ..Default::default()
    };
    let (code_, msg) = code(n1.list(bad_state).await);
    assert_eq!(code_, Code::InvalidArgument);
    assert!(msg.contains("queued, leased, running"), "{msg}");
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// Independent submits in one call (`SubmitEach`, what the client library
/// sends for concurrent submits): each has its own key and outcome, one
/// refused leaves the others accepted, a repeated key answers its first
/// outcome, and a follower forwards them like single submits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_in_one_call_each_get_their_own_outcome() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let follower = c.followers(leader)[0];
    for via in [leader, follower] {
        let n = Node::new(&c, via);
        let first = meta();
        let submit = |meta: Option<WriteMeta>, queue: &str| SubmitTaskRequest {
            meta,
            task: Some(spec(queue, "", "r")),
        };
        let req = SubmitEachRequest {
            submits: vec![
                submit(first.clone(), "default"),
                submit(meta(), "nope"),
                submit(meta(), "default"),
                submit(first.clone(), "default"),
                SubmitTaskRequest {
                    meta: meta(),
                    task: None,
                },
            ],
        };
        let outcomes = n
            .tasks()
            .submit_each(req)
            .await
            .unwrap()
            .into_inner()
            .outcomes;
        use submit_outcome::Outcome;
        let got: Vec<_> = outcomes.into_iter().map(|o| o.outcome.unwrap()).collect();
        let (Outcome::Submitted(a), Outcome::Submitted(b), Outcome::Submitted(again)) =
            (&got[0], &got[2], &got[3])
        else {
            panic!("via node {via}: {got:?}");
        };
        assert!(a.created && b.created && a.id != b.id, "{got:?}");
        assert_eq!(again.id, a.id, "a repeated key answers its first outcome");
        assert!(!again.created);
        let Outcome::Refused(r) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(Code::from_i32(r.code), Code::NotFound, "{r:?}");
        assert!(r.message.contains("nope"), "{r:?}");
        let Outcome::Refused(r) = &got[4] else {
            panic!("{got:?}")
        };
        assert_eq!(Code::from_i32(r.code), Code::InvalidArgument, "{r:?}");
        for id in [a.id, b.id] {
            assert_eq!(n.get(id).await.unwrap().state, "queued");
        }
    }
    let too_many = SubmitEachRequest {
        submits: (0..1001)
            .map(|_| SubmitTaskRequest {
                meta: meta(),
                task: Some(spec("default", "", "r")),
            })
            .collect(),
    };
    let r = Node::new(&c, leader).tasks().submit_each(too_many).await;
    assert_eq!(code(r).0, Code::InvalidArgument);

    // The client library shares calls between concurrent submits: 400 at
    // once all get distinct ids, and the one to an unknown queue alone fails.
    let client = c.client();
    let submits = (0..400).map(|i| {
        let client = client.clone();
        async move {
            let queue = if i == 7 { "nope" } else { "default" };
            client.submit(spec(queue, "", &format!("r{i}")), None).await
        }
    });
    let results = futures::future::join_all(submits).await;
    let mut ids = std::collections::BTreeSet::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(s) => assert!(i != 7 && ids.insert(s.id), "{i}: {s:?}"),
            Err(e) => assert!(i == 7 && e.code() == Code::NotFound, "{i}: {e}"),
        }
    }
    assert_eq!(ids.len(), 399);
    let queued = Node::new(&c, leader).queue("default").await.queued;
    assert_eq!(queued, 399 + 4, "nothing submitted twice, nothing lost");
}

/// Past a size limit a request is refused naming the field, and nothing is
/// written: a list page over 1000, a batch of 1001 (gRPC and `--file`),
/// 33 labels on a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_a_size_limit_are_refused_naming_the_field() {
    let (c, n) = &on_a_follower().await;
    n.create_queue("big", "", None).await;
    let page = |size| ListTasksRequest {
        queue: "big".into(),
        page_size: size,
        ..Default::default()
    };
    let (got, msg) = code(n.list(page(1001)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("page_size: "), "{msg}");
    assert!(n.list(page(1000)).await.is_ok());

    let many = |count| (0..count).map(|_| spec("big", "", "")).collect();
    let (got, msg) = code(n.batch(many(1001)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("tasks: ") && msg.contains("1000"), "{msg}");
    assert_eq!(
        n.queue("big").await.queued,
        0,
        "a refused batch creates nothing"
    );
    let file = c.dir.path().join("big.jsonl");
    let line = "{\"command\": [\"true\"]}\n";
    std::fs::write(&file, line.repeat(1001)).unwrap();
    let path = file.to_str().unwrap();
    let (exit, _, err) = c.cli(&["task", "submit", "--file", path, "--queue", "big"]);
    assert_eq!(exit, Some(2), "{err}");
    assert!(
        err.contains("file: ") && err.contains("1001 tasks"),
        "{err}"
    );
    assert_eq!(n.queue("big").await.queued, 0);
    assert_eq!(n.batch(many(1000)).await.unwrap().len(), 1000);
    assert_eq!(
        n.queue("big").await.queued,
        1000,
        "1000 is within the limit"
    );

    let labelled = |count: usize| {
        let mut s = spec("big", "", "");
        s.labels = (0..count).map(|i| (format!("k{i}"), "v".into())).collect();
        s
    };
    let (got, msg) = code(n.submit(labelled(33)).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("labels: ") && msg.contains("32"), "{msg}");
    let (got, msg) = code(n.batch(vec![labelled(1), labelled(33)]).await);
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("tasks[1].labels: "), "{msg}");
    assert_eq!(n.queue("big").await.queued, 1000, "nothing was written");
    let id = n.submit(labelled(32)).await.unwrap().id;
    assert_eq!(n.get(id).await.unwrap().labels.len(), 32);
}

/// `laneq task list -o json` with its arguments: the ids, positions and
/// next page token it prints.
fn cli_list(c: &Cluster, args: &[&str]) -> (Vec<u64>, Vec<Option<u64>>, String) {
    let all = [&["task", "list", "-o", "json"], args].concat();
    let (exit, out, err) = c.cli(&all);
    assert_eq!(exit, Some(0), "{args:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    let ids = tasks.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let positions = tasks.iter().map(|t| t["position"].as_u64()).collect();
    let token = v["next_page_token"].as_str().unwrap().to_string();
    (ids, positions, token)
}

/// `task list --run` keeps only that run's tasks, in queue order, and
/// `--limit` with `--page-token` pages through the rest without repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_task_lists_filter_by_run_and_page_without_repeats() {
    let (c, n) = &on_a_follower().await;
    n.create_queue("runs", "", None).await;
    let a = submit_n(n, "runs", "sweep-a", 1).await[0];
    let x = submit_n(n, "runs", "sweep-b", 1).await[0];
    let b = submit_n(n, "runs", "sweep-a", 1).await[0];
    let d = submit_n(n, "runs", "sweep-a", 1).await[0];
    n.mv(d, To::Front(true)).await.unwrap();
    assert_eq!(n.order("runs").await, [d, a, x, b]);

    let (ids, positions, token) = cli_list(c, &["--queue", "runs", "--run", "sweep-a"]);
    assert_eq!(ids, [d, a, b], "only that run, in queue order");
    assert_eq!(positions, [Some(1), Some(2), Some(4)]);
    assert_eq!(token, "");
    assert_eq!(cli_list(c, &["--run", "sweep-b"]).0, [x]);

    let (first, _, token) = cli_list(c, &["--queue", "runs", "--limit", "3"]);
    assert_eq!(first, [d, a, x]);
    assert!(!token.is_empty());
    let (exit, _, err) = c.cli(&["task", "list", "--queue", "runs", "--limit", "3"]);
    assert_eq!(exit, Some(0));
    assert!(
        err.contains("--page-token"),
        "the CLI says how to go on: {err}"
    );
    let (rest, _, end) = cli_list(
        c,
        &["--queue", "runs", "--limit", "3", "--page-token", &token],
    );
    assert_eq!((rest, end.as_str()), (vec![b], ""), "the rest, no repeats");
    let run_args = ["--queue", "runs", "--run", "sweep-a", "--limit", "2"];
    let (first, _, token) = cli_list(c, &run_args);
    assert_eq!(first, [d, a]);
    let (rest, _, _) = cli_list(c, &[&run_args[..], &["--page-token", &token]].concat());
    assert_eq!(rest, [b]);
    let (every, _, end) = cli_list(c, &["--queue", "runs", "--limit", "3", "--all"]);
    assert_eq!((every, end.as_str()), (vec![d, a, x, b], ""));

    let (exit, _, err) = c.cli(&["task", "list", "--limit", "1001"]);
    assert_eq!(exit, Some(2), "{err}");
    assert!(err.contains("page_size"), "{err}");
}
