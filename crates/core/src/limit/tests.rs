//! The local store on tokio's paused clock: bursts, refills, retry-after, the sliding
//! window, concurrency places, the bound on keys, refunds and the quota state file.

use super::*;
use gatehouse_config::spec::{KeyPart, MissingPart};

fn spec(name: &str, kind: LimitKind) -> RateLimitSpec {
    RateLimitSpec {
        name: name.into(),
        key: vec![KeyPart::Route],
        kind,
        store: LimitStore::Local,
        on_store_error: FailMode::Open,
        dry_run: false,
        headers: true,
        legacy_headers: false,
        max_keys: 1000,
        missing: MissingPart::Shared,
    }
}

fn rate(count: f64, secs: u64, burst: u64, algorithm: Algorithm) -> LimitKind {
    LimitKind::Rate {
        count,
        period: Duration::from_secs(secs),
        burst,
        algorithm,
    }
}

async fn verdict(p: &Policy, key: &str) -> Verdict {
    match p.check(key).await {
        Answer::Counted(v) => v,
        _ => panic!("a rate policy counts"),
    }
}

#[tokio::test(start_paused = true)]
async fn gcra_burst_then_refill_on_the_paused_clock() {
    let p = Policy::new(spec("p", rate(10.0, 1, 3, Algorithm::Gcra)), None).unwrap();
    for left in [2, 1, 0] {
        assert_eq!(verdict(&p, "k").await.remaining, left);
    }
    let v = verdict(&p, "k").await;
    assert!(!v.allowed);
    assert_eq!(v.retry_after, Duration::from_millis(100));
    assert!(verdict(&p, "other").await.allowed, "keys are apart");
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(verdict(&p, "k").await.allowed);
    assert!(!verdict(&p, "k").await.allowed);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(verdict(&p, "k").await.remaining, 2, "a full bucket again");
    assert_eq!(p.advert.as_deref(), Some("\"p\";q=10;w=1"));
}

#[tokio::test(start_paused = true)]
async fn sliding_window_on_the_paused_clock() {
    let p = Policy::new(spec("w", rate(4.0, 10, 4, Algorithm::SlidingWindow)), None).unwrap();
    for _ in 0..4 {
        assert!(verdict(&p, "k").await.allowed);
    }
    let v = verdict(&p, "k").await;
    assert!(!v.allowed && v.retry_after > Duration::ZERO);
    tokio::time::advance(v.retry_after).await;
    assert!(
        verdict(&p, "k").await.allowed,
        "passes once the retry-after has gone by"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refund_gives_the_place_back() {
    let p = Policy::new(spec("p", rate(1.0, 60, 1, Algorithm::Gcra)), None).unwrap();
    assert!(verdict(&p, "k").await.allowed);
    assert!(!verdict(&p, "k").await.allowed);
    p.refund("k");
    assert!(verdict(&p, "k").await.allowed);
}

#[tokio::test]
async fn concurrency_places_come_back_when_dropped() {
    let p = Policy::new(spec("c", LimitKind::Concurrency { max: 2 }), None).unwrap();
    let place = |a: Answer| match a {
        Answer::Place(p) => p,
        _ => panic!("a concurrency policy gives places"),
    };
    let a = place(p.check("k").await).unwrap();
    let _b = place(p.check("k").await).unwrap();
    assert!(place(p.check("k").await).is_none());
    drop(a);
    assert!(place(p.check("k").await).is_some());
    assert_eq!(p.usage("k").await.unwrap().remaining, 1);
}

#[tokio::test]
async fn a_flood_of_keys_is_bounded_by_max_keys() {
    let p = Policy::new(spec("p", rate(1.0, 3600, 1, Algorithm::Gcra)), None).unwrap();
    for i in 0..20_000 {
        verdict(&p, &format!("key-{i}")).await;
    }
    let held = p.local_keys();
    assert!(held <= 1000, "{held} keys held");
}

#[tokio::test]
async fn quota_counts_survive_in_the_state_file() {
    let dir = gatehouse_test_support::scratch::dir("quota");
    let file = dir.join("q.json");
    let _ = std::fs::remove_file(&file);
    let kind = LimitKind::Quota {
        count: 3,
        period: QuotaPeriod::Calendar(CalendarUnit::Day),
        time_zone: "Europe/Berlin".into(),
        state_file: Some(file.clone()),
    };
    let p = Policy::new(spec("q", kind.clone()), None).unwrap();
    assert_eq!(verdict(&p, "alice").await.remaining, 2);
    assert_eq!(verdict(&p, "alice").await.remaining, 1);
    drop(p); // writes the file
    let p = Policy::new(spec("q", kind.clone()), None).unwrap();
    assert_eq!(
        p.usage("alice").await.unwrap().remaining,
        1,
        "counts came back"
    );
    assert_eq!(verdict(&p, "alice").await.remaining, 0);
    assert!(!verdict(&p, "alice").await.allowed);
    p.reset("alice").await.unwrap();
    assert_eq!(verdict(&p, "alice").await.remaining, 2);
    drop(p);
    std::fs::write(&file, b"{not json").unwrap();
    let (key, err) = Policy::new(spec("q", kind), None).err().unwrap();
    assert_eq!(key, "state_file");
    assert!(err.contains("not a quota state file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_names_are_quoted_as_structured_strings() {
    assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
}
