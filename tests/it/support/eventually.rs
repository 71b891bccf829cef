//! Waiting for a condition instead of for the clock. `eventually` polls a
//! check until it holds; `always` polls one that must hold for a while. The
//! pause between polls lives here and nowhere else: a test never sleeps to
//! let something happen, it names what it waits for, and a timeout says what
//! it saw instead.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// The first pause between two polls; it doubles from one poll to the next.
const PAUSE_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between two polls: how late a condition that came true
/// may be noticed, against how often a slow check (a CLI run) is repeated.
const PAUSE_MAX: Duration = Duration::from_millis(200);

/// Polls `check` until it returns `Ok`, and returns that value. An `Err`
/// carries what the check saw instead. If `within` passes first, panics
/// with a message that names `what` (say "task 4 to be queued") and the
/// last thing seen. `check` runs at least once, and may assert.
pub async fn eventually<T, E: Debug>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    let mut pause = PAUSE_FIRST;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        let now = Instant::now();
        assert!(
            now < deadline,
            "timed out after {within:?} waiting for {what}; last seen: {seen:?}"
        );
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(PAUSE_MAX);
    }
}

/// Polls `check` for the whole of `during` (at least twice: at the start
/// and at the end); panics at the first `Err`, naming `what` (say "the
/// leases held") and what the check saw.
pub async fn always<E: Debug>(
    during: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<(), E>,
) {
    let start = Instant::now();
    let end = start + during;
    loop {
        if let Err(seen) = check().await {
            panic!(
                "{what} stopped holding after {:?} of {during:?}; seen: {seen:?}",
                start.elapsed()
            );
        }
        let now = Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep(PAUSE_MAX.min(end - now)).await;
    }
}

/// `Ok(())` if `holds`, else `Err(seen)`: a yes-or-no check for
/// `eventually` or `always` that reports what it saw.
pub fn ok_if<E>(holds: bool, seen: E) -> Result<(), E> {
    if holds {
        Ok(())
    } else {
        Err(seen)
    }
}

#[tokio::test]
async fn eventually_returns_the_first_value_a_check_yields() {
    let mut polls = 0;
    let got = eventually(Duration::from_secs(5), "the third poll", async || {
        polls += 1;
        if polls == 3 {
            Ok(polls * 10)
        } else {
            Err(polls)
        }
    })
    .await;
    assert_eq!((got, polls), (30, 3));
}

#[tokio::test]
#[should_panic(expected = "waiting for the impossible; last seen: \"still no\"")]
async fn eventually_names_what_it_waited_for_and_what_it_saw() {
    eventually(Duration::from_millis(50), "the impossible", async || {
        Err::<(), _>("still no")
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "the answer held stopped holding")]
async fn always_fails_at_the_first_check_that_does_not_hold() {
    let mut polls = 0;
    always(Duration::from_secs(5), "the answer held", async || {
        polls += 1;
        ok_if(polls < 3, polls)
    })
    .await;
}
