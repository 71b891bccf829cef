//! Shape checks on client input: the checks of single fields here, and one
//! check per operation in `ops`, entered through [`validate_write`]. The API
//! layer runs them before proposing, so a malformed write never reaches the
//! log; apply runs them again, because the log is the only input the state
//! machine trusts.
//!
//! **Architecture Invariant:** a check looks at its input alone, never at the
//! state (whether a queue exists is apply's question), and its message names
//! the field at fault.

mod ops;

pub use ops::{validate_write, validate_writes};

use super::error::ModelError;
use super::limits::*;

/// Names (queues, pools, projects, runs): 1 to 63 bytes of ASCII letters,
/// digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn name(field: &str, value: &str) -> Result<(), ModelError> {
    non_empty_within(field, value, NAME_MAX_BYTES)?;
    for (i, c) in value.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(ModelError::invalid(
                field,
                format!(
                    "{value:?} has {c:?} at position {i}; use ASCII letters, digits, '-', '_' and '.', \
                     starting with a letter or digit"
                ),
            ));
        }
    }
    Ok(())
}

/// A string of 1 to `max` bytes.
fn non_empty_within(field: &str, value: &str, max: usize) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(ModelError::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ModelError::invalid(
            field,
            format!("is {} bytes long; the limit is {max}", value.len()),
        ));
    }
    Ok(())
}

/// Free text of at most `max` bytes without control characters (may be empty).
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ModelError> {
    if value.len() > max {
        return Err(ModelError::invalid(
            field,
            format!("is {} bytes long; the limit is {max}", value.len()),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ModelError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Task labels: at most [`LABELS_MAX`], keys are names, values are short text.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), ModelError> {
    if labels.len() > LABELS_MAX {
        return Err(ModelError::invalid(
            "labels",
            format!("{} labels; the limit is {LABELS_MAX}", labels.len()),
        ));
    }
    for (k, v) in labels {
        name("labels", k)?;
        text(&format!("labels.{k}"), v, LABEL_VALUE_MAX_BYTES)?;
    }
    Ok(())
}

pub fn idempotency_key(value: &str) -> Result<(), ModelError> {
    let field = "idempotency_key";
    non_empty_within(field, value, IDEMPOTENCY_KEY_MAX_BYTES)?;
    if value.chars().any(|c| c.is_control()) {
        return Err(ModelError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub fn command(args: &[String]) -> Result<(), ModelError> {
    if args.is_empty() {
        return Err(ModelError::invalid(
            "command",
            "must not be empty; give the program and its arguments after `--`",
        ));
    }
    if args.len() > COMMAND_MAX_ARGS {
        return Err(ModelError::invalid(
            "command",
            format!(
                "has {} arguments; the limit is {COMMAND_MAX_ARGS}",
                args.len()
            ),
        ));
    }
    if args[0].is_empty() {
        return Err(ModelError::invalid(
            "command[0]",
            "the program must not be empty",
        ));
    }
    let total: usize = args.iter().map(String::len).sum();
    if total > COMMAND_MAX_BYTES {
        return Err(ModelError::invalid(
            "command",
            format!("is {total} bytes long; the limit is {COMMAND_MAX_BYTES}"),
        ));
    }
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(ModelError::invalid(
            format!("command[{i}]"),
            "must not contain a NUL byte",
        ));
    }
    Ok(())
}

pub fn payload(bytes: &[u8]) -> Result<(), ModelError> {
    if bytes.len() > PAYLOAD_MAX_BYTES {
        return Err(ModelError::invalid(
            "payload",
            format!(
                "is {} bytes long; the limit is {PAYLOAD_MAX_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_usual_shapes() {
        for ok in ["default", "gpu-a100", "team_x.batch", "Q1", "a"] {
            assert!(name("queue", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_with_the_field_and_the_reason() {
        let e = name("queue", "").unwrap_err();
        assert_eq!(e.to_string(), "queue: must not be empty");
        let e = name("queue", &"x".repeat(64)).unwrap_err();
        assert!(e.to_string().contains("the limit is 63"), "{e}");
        let e = name("queue", "has space").unwrap_err();
        assert!(e.to_string().contains("' ' at position 3"), "{e}");
        assert!(name("queue", "-lead").is_err());
        assert!(name("queue", "ünï").is_err());
        assert!(name("queue", &"x".repeat(63)).is_ok());
    }

    #[test]
    fn commands_and_payloads_have_limits() {
        assert!(command(&[]).is_err());
        assert!(command(&["".into()]).is_err());
        assert!(command(&["echo".into(), "hi".into()]).is_ok());
        let many: Vec<String> = (0..=COMMAND_MAX_ARGS).map(|i| i.to_string()).collect();
        assert!(command(&many).is_err());
        assert!(command(&["a\0b".into()])
            .unwrap_err()
            .to_string()
            .starts_with("command[0]"));
        assert!(payload(&vec![0; PAYLOAD_MAX_BYTES]).is_ok());
        assert!(payload(&vec![0; PAYLOAD_MAX_BYTES + 1]).is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key("k-1").is_ok());
        assert!(idempotency_key(&"k".repeat(129)).is_err());
        assert!(idempotency_key("a\nb").is_err());
    }
}
