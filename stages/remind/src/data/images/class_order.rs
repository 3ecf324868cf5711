//! The class order of class-incremental learning: label = position in the order. Either
//! an ordering file (one class name per line, as the paper's ImageNet ordering files) or a
//! seeded shuffle of the sorted class names.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The class names of an ordering file: one per line, surrounding whitespace and blank
/// lines ignored (through [`crate::text`]: a byte-order mark and CR line ends too).
pub fn parse_order_text(text: &str) -> Vec<String> {
    crate::text::content_lines(text)
        .map(|(_, l)| l.to_string())
        .collect()
}

/// Checks that `order` (read from `source`) names every class of `classes` exactly once;
/// the error lists every unknown, repeated and missing name.
pub fn check_order(source: &str, order: &[String], classes: &[String]) -> Result<()> {
    let known: BTreeSet<&str> = classes.iter().map(String::as_str).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut unknown = Vec::new();
    for name in order {
        if !known.contains(name.as_str()) && !unknown.contains(&name.as_str()) {
            unknown.push(name.as_str());
        }
        *seen.entry(name.as_str()).or_default() += 1;
    }
    let mut repeated_unique: Vec<&str> = Vec::new();
    for n in order.iter().map(String::as_str) {
        if seen[n] > 1 && known.contains(n) && !repeated_unique.contains(&n) {
            repeated_unique.push(n);
        }
    }
    let missing: Vec<&str> = classes
        .iter()
        .map(String::as_str)
        .filter(|n| !seen.contains_key(n))
        .collect();
    // Each non-empty list as "<what>: 'a', 'b'".
    let problems: Vec<String> = [
        (
            format!("{} unknown class name(s) (not in the data)", unknown.len()),
            &unknown,
        ),
        (
            "class name(s) listed more than once".to_string(),
            &repeated_unique,
        ),
        (
            format!(
                "{} class(es) of the data missing from the order",
                missing.len()
            ),
            &missing,
        ),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| {
        let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        format!("{what}: {}", quoted.join(", "))
    })
    .collect();
    if !problems.is_empty() {
        bail!(
            "{source}: class order must name each of the {} classes exactly once: {}",
            classes.len(),
            problems.join("; ")
        );
    }
    Ok(())
}

/// Reads and checks the ordering file `path` against `classes`.
pub fn read_order(path: &Path, classes: &[String]) -> Result<Vec<String>> {
    let p = path.display();
    let text = crate::text::read_text(path)?;
    let order = parse_order_text(&text);
    check_order(&p.to_string(), &order, classes)?;
    Ok(order)
}

/// The class names sorted byte-wise, then shuffled with `ChaCha8Rng::seed_from_u64(seed)`.
pub fn shuffled_order(classes: &[String], seed: u64) -> Vec<String> {
    let mut order = classes.to_vec();
    order.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ordering_file_text_ignores_blanks_and_whitespace() {
        assert_eq!(
            parse_order_text("  b \n\n\ta\r\n c/d\n\n"),
            names(&["b", "a", "c/d"])
        );
    }

    #[test]
    fn order_must_name_every_class_once() {
        let classes = names(&["a", "b", "c", "d"]);
        check_order("f", &names(&["d", "a", "c", "b"]), &classes).unwrap();
        let err = check_order("f.txt", &names(&["a", "x", "b", "y", "b", "x"]), &classes)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.txt: "), "{err}");
        assert!(err.contains("'x', 'y'"), "{err}");
        assert!(err.contains("more than once: 'b'"), "{err}");
        assert!(err.contains("missing from the order: 'c', 'd'"), "{err}");
    }

    #[test]
    fn shuffle_is_seeded_and_independent_of_input_order() {
        let classes = names(&["c", "a", "e", "b", "d", "f", "g", "h"]);
        let mut reversed = classes.clone();
        reversed.reverse();
        let a = shuffled_order(&classes, 7);
        assert_eq!(a, shuffled_order(&reversed, 7));
        assert_eq!(a, shuffled_order(&classes, 7));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, names(&["a", "b", "c", "d", "e", "f", "g", "h"]));
        let others: Vec<_> = (0..5).map(|s| shuffled_order(&classes, s)).collect();
        assert!(others.iter().any(|o| *o != a), "seed changes nothing");
    }
}
