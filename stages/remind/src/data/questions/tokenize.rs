//! Question tokenisation as REMIND's VQA pipelines do it: lower-case, commas and question
//! marks removed, "'s" split off as its own token, split on whitespace, and ';' or '.' at
//! the end of a word dropped.

/// The tokens of `text`.
pub fn tokenize(text: &str) -> Vec<String> {
    let cleaned = text.to_lowercase().replace([',', '?'], "");
    let mut out = Vec::new();
    for word in cleaned.split_whitespace() {
        let word = word.trim_end_matches([';', '.']);
        if word.is_empty() {
            continue;
        }
        match word.strip_suffix("'s") {
            Some(stem) => {
                if !stem.is_empty() {
                    out.push(stem.to_string());
                }
                out.push("'s".to_string());
            }
            None => out.push(word.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_reference_rules() {
        assert_eq!(
            tokenize("There is a small red thing; what's its Shape?"),
            ["there", "is", "a", "small", "red", "thing", "what", "'s", "its", "shape"]
        );
        assert_eq!(
            tokenize("  Is the man's hat, or the dog's collar, blue?  "),
            ["is", "the", "man", "'s", "hat", "or", "the", "dog", "'s", "collar", "blue"]
        );
        assert_eq!(tokenize("What is this. ;"), ["what", "is", "this"]);
        assert_eq!(tokenize("'s"), ["'s"]);
        assert!(tokenize(" ? , ").is_empty());
    }
}
