//! `@handle` mentions in comment bodies.

/// Longest handle, in characters.
const MAX_HANDLE_LEN: usize = 39;

fn is_handle_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
}

/// Whether `handle` matches `[a-z0-9_.-]{1,39}` (lowercase only; normalize before calling).
pub fn validate_handle(handle: &str) -> bool {
    (1..=MAX_HANDLE_LEN).contains(&handle.len()) && handle.chars().all(is_handle_char)
}

/// The distinct `@handle` mentions in `body`, lowercased, in order of first appearance.
///
/// The `@` must start the body or follow a non-alphanumeric character (so `bob@example.com` is no
/// mention), and trailing dots are not part of the handle (`@alice.` mentions `alice`).
pub fn mentioned_handles(body: &str) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut handles: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_mention = chars[i] == '@' && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts_mention {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < chars.len() && is_handle_char(chars[end].to_ascii_lowercase()) {
            end += 1;
        }
        let handle: String = chars[start..end]
            .iter()
            .collect::<String>()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if validate_handle(&handle) && !handles.contains(&handle) {
            handles.push(handle);
        }
        i = end.max(i + 1);
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_in_order_of_first_appearance() {
        assert_eq!(
            mentioned_handles("@bob please check with @alice and @bob"),
            ["bob", "alice"]
        );
    }

    #[test]
    fn mentions_are_lowercased_and_deduplicated_case_insensitively() {
        assert_eq!(mentioned_handles("@Alice and @ALICE"), ["alice"]);
    }

    #[test]
    fn email_addresses_are_not_mentions() {
        assert!(mentioned_handles("write to bob@example.com").is_empty());
    }

    #[test]
    fn trailing_dots_are_not_part_of_a_handle() {
        assert_eq!(mentioned_handles("thanks @alice."), ["alice"]);
        assert_eq!(mentioned_handles("ask @j.doe..."), ["j.doe"]);
    }

    #[test]
    fn mentions_may_follow_punctuation_and_contain_dashes_and_underscores() {
        assert_eq!(
            mentioned_handles("(@dev-ops), cc:@qa_team!"),
            ["dev-ops", "qa_team"]
        );
    }

    #[test]
    fn a_bare_at_sign_is_not_a_mention() {
        assert!(mentioned_handles("meet @ noon, or @. or @").is_empty());
    }

    #[test]
    fn handles_longer_than_39_characters_are_not_mentions() {
        let long = "a".repeat(40);
        assert!(mentioned_handles(&format!("@{long}")).is_empty());
        let max = "a".repeat(39);
        assert_eq!(mentioned_handles(&format!("@{max}")), [max]);
    }

    #[test]
    fn a_mention_after_non_ascii_letters_is_not_a_mention() {
        assert!(mentioned_handles("été@alice").is_empty());
    }

    #[test]
    fn handles_follow_the_pattern() {
        assert!(validate_handle("alice"));
        assert!(validate_handle("j.doe-2_x"));
        assert!(!validate_handle(""));
        assert!(!validate_handle("Alice"));
        assert!(!validate_handle("al ice"));
        assert!(!validate_handle("alice@x"));
        assert!(!validate_handle(&"a".repeat(40)));
    }
}
