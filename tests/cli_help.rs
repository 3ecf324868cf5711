//! End to end: every binary's `--help` (and each subcommand's) documents every flag and
//! argument, and `--version` names the git revision (issue #17, "a command line that fits
//! together").

use std::process::Command;

use remind_e2e::bin_dir;

/// The flags and arguments of a `--help` text that have no description (a bare
/// `[default: ..]` does not count as one).
fn undocumented(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_list = false;
    // A flag whose description may still follow on the next, more indented, line.
    let mut pending: Option<String> = None;
    for line in help.lines() {
        if line == "Options:" || line == "Arguments:" {
            in_list = true;
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            out.extend(pending.take());
            in_list = false;
            continue;
        }
        if !in_list {
            continue;
        }
        let text = line.trim_start();
        // clap's notes under a flag: `[default: ..]`, `[possible values: ..]`, `[env: ..]`.
        let note = ["[default", "[possible", "[env", "[alias"]
            .iter()
            .any(|n| text.starts_with(n));
        let is_entry = text.starts_with('-') && !text.starts_with("- ")
            || text.starts_with('<')
            || text.starts_with('[') && !note;
        if is_entry {
            out.extend(pending.take());
            // The description starts after a run of two spaces, on this line or the next.
            let rest = text.split_once("  ").map(|(_, r)| r.trim()).unwrap_or("");
            if rest.is_empty() || (rest.starts_with("[default:") && rest.ends_with(']')) {
                pending = Some(text.trim_end().to_string());
            }
        } else if !text.is_empty() && !note {
            pending = None;
        }
    }
    out.extend(pending);
    out
}

fn help_of(bin: &std::path::Path, sub: Option<&str>) -> String {
    let out = Command::new(bin)
        .args(sub)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(out.status.success(), "{} --help failed", bin.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_flag_of_every_binary_has_help_and_every_version_names_its_revision() {
    let mut bins: Vec<_> = std::fs::read_dir(bin_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("remind-") && !n.contains('.') && p.is_file()
        })
        .collect();
    bins.sort();
    assert!(bins.len() >= 20, "binaries found: {bins:?}");
    let mut missing = Vec::new();
    for bin in &bins {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let help = help_of(bin, None);
        missing.extend(
            undocumented(&help)
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
        for sub in subcommands(&help) {
            let h = help_of(bin, Some(&sub));
            missing.extend(
                undocumented(&h)
                    .into_iter()
                    .map(|f| format!("{name} {sub}: {f}")),
            );
        }
        let version = Command::new(bin).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION")))
                && version.contains("(git "),
            "{version}"
        );
    }
    assert!(
        missing.is_empty(),
        "flags without help:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_help_parser_finds_an_undocumented_flag() {
    let help = "Usage: x\n\nArguments:\n  <PATH>  \n\nOptions:\n      --a <A>  Described\n      \
                --b <B>  [default: 3]\n      --c <C>\n          Described on the next line\n      \
                --d\n  -h, --help  Print help\n";
    assert_eq!(
        undocumented(help),
        vec!["<PATH>", "--b <B>  [default: 3]", "--d"]
    );
}

/// A flag whose config sections default differently shows no single `[default: ..]` (it
/// would be wrong for one task); its help names both. stream-train's --order: qtype for
/// VQA, class_iid for classification.
#[test]
fn a_flag_with_two_defaults_shows_neither_as_the_default() {
    let help = help_of(&bin_dir().join("remind-stream-train"), None);
    let order: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--order"))
        .take(2)
        .collect();
    let text = order.join(" ");
    assert!(
        text.contains("qtype (the default)") && text.contains("class_iid (the default)"),
        "{text}"
    );
    assert!(!text.contains("[default:"), "{text}");
    assert!(
        help.contains("[default: 50]"),
        "r still shows its one default:\n{help}"
    );
}
