//! The documentation stays true to the code: the command reference in `docs/` (the
//! Markdown page `docs/src/reference/cli.md` and one man page per command in
//! `docs/man/`) is exactly what the clap definitions render today, the book builds with
//! mdBook, and every relative link in the README, the book and the other Markdown files
//! points at a file (and a heading) that exists.
//!
//! `UPDATE_REFERENCE=1 cargo test --release --test cli_reference` rewrites the generated
//! reference instead of comparing it. The reference depends only on the clap definitions
//! and the crate version: environment variables are named, never their values, so it is
//! the same on every machine.
//!
//! Peers: none for the reference and the links; mdBook (`scripts/test-peers.sh install
//! docs`) for the book, which is skipped without it (a failure under `CI=true`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

/// What to run when the committed reference no longer matches the code.
const REGENERATE: &str = "run `UPDATE_REFERENCE=1 cargo test --release --test cli_reference` and commit the result";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn updating() -> bool {
    std::env::var("UPDATE_REFERENCE").is_ok_and(|v| v == "1" || v == "true")
}

/// Makes clap-markdown show what `--help` shows: the environment variable of every
/// option that has one (`[env: NAME]`, without the value), which clap-markdown leaves
/// out, and no default that `--help` hides (`hide_default_value`), which it shows. The
/// man pages do both themselves (clap_mangen's `env` feature).
fn as_help_shows_it(mut command: clap::Command) -> clap::Command {
    let ids: Vec<clap::Id> = command.get_arguments().map(|arg| arg.get_id().clone()).collect();
    for id in ids {
        command = command.mut_arg(id, |arg| {
            let arg = if arg.is_hide_default_value_set() { arg.default_value(None) } else { arg };
            match arg.get_env().filter(|_| !arg.is_hide_env_set()).map(|env| env.to_string_lossy().into_owned()) {
                Some(env) => {
                    let help = arg.get_long_help().or(arg.get_help()).map(|help| help.to_string()).unwrap_or_default();
                    arg.long_help(format!("{help} [env: {env}]"))
                }
                None => arg,
            }
        });
    }
    let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_string()).collect();
    for name in names {
        command = command.mut_subcommand(name, as_help_shows_it);
    }
    command
}

/// The Markdown command reference, as `docs/src/reference/cli.md` holds it.
fn markdown_reference() -> String {
    let command = as_help_shows_it(ingest_backup::cli::Cli::command());
    let options = clap_markdown::MarkdownOptions::new().title("Command-line reference".to_string()).show_footer(false);
    let body = clap_markdown::help_markdown_command_custom(&command, &options);
    let notice = "<!-- Generated from the clap definitions in src/cli.rs by tests/cli_reference.rs: do not edit.\n     \
                  To regenerate: UPDATE_REFERENCE=1 cargo test --release --test cli_reference -->\n\n";
    let mut text = format!("{notice}{body}");
    // One trailing newline, no trailing spaces: the file is committed and diffed.
    text = text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    while text.ends_with('\n') {
        text.pop();
    }
    text.push('\n');
    text
}

/// The man pages, one per command (`ingest-backup.1`, `ingest-backup-backup.1`, ...), by
/// file name.
fn man_pages() -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(ingest_backup::cli::Cli::command(), dir.path()).unwrap();
    let mut pages = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        pages.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
    }
    pages
}

/// The first line where `committed` and `generated` differ, for the failure message.
fn first_difference(committed: &str, generated: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (committed.lines().collect(), generated.lines().collect());
    for line in 0..old.len().max(new.len()) {
        let (a, b) = (old.get(line), new.get(line));
        if a != b {
            return format!(
                "line {}: committed {:?}, generated {:?}",
                line + 1,
                a.copied().unwrap_or("<end of file>"),
                b.copied().unwrap_or("<end of file>")
            );
        }
    }
    "the files differ only in line endings".to_string()
}

#[test]
fn the_markdown_command_reference_matches_the_clap_definitions() {
    let path = root().join("docs/src/reference/cli.md");
    let generated = markdown_reference();
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/src/reference/cli.md is not what the clap definitions render ({}): {REGENERATE}",
        first_difference(&committed, &generated)
    );
}

#[test]
fn the_man_pages_match_the_clap_definitions() {
    let dir = root().join("docs/man");
    let generated = man_pages();
    assert!(generated.contains_key("ingest-backup.1") && generated.contains_key("ingest-backup-backup.1"), "{:?}", generated.keys());
    let committed: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap())
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".1"))
                .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()))
                .collect()
        })
        .unwrap_or_default();
    if updating() {
        std::fs::create_dir_all(&dir).unwrap();
        for stale in committed.keys().filter(|name| !generated.contains_key(*name)) {
            std::fs::remove_file(dir.join(stale)).unwrap();
        }
        for (name, page) in &generated {
            std::fs::write(dir.join(name), page).unwrap();
        }
        eprintln!("wrote {} man pages into {}", generated.len(), dir.display());
        return;
    }
    let mut problems = Vec::new();
    for (name, page) in &generated {
        match committed.get(name) {
            None => problems.push(format!("docs/man/{name} is missing")),
            Some(old) if old != page => problems
                .push(format!("docs/man/{name} differs ({})", first_difference(&String::from_utf8_lossy(old), &String::from_utf8_lossy(page)))),
            Some(_) => {}
        }
    }
    for name in committed.keys().filter(|name| !generated.contains_key(*name)) {
        problems.push(format!("docs/man/{name} belongs to no command"));
    }
    assert!(problems.is_empty(), "the man pages are not what the clap definitions render: {}; {REGENERATE}", problems.join("; "));
}

/// Every environment variable an option of the command line reads, by name.
fn env_var_names(command: &clap::Command, into: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            into.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in command.get_subcommands() {
        env_var_names(sub, into);
    }
}

/// The whole generated reference as one text: the Markdown, then each man page.
fn whole_reference() -> String {
    let mut text = markdown_reference();
    for (name, page) in man_pages() {
        text.push_str(&format!("\n==> {name} <==\n{}", String::from_utf8_lossy(&page)));
    }
    text
}

/// Not a check of its own: with `CLI_REFERENCE_DUMP=FILE` (set by the test below for a
/// child process) it writes [`whole_reference`] into FILE.
#[test]
fn dump_the_reference_for_the_environment_check() {
    if let Some(file) = std::env::var_os("CLI_REFERENCE_DUMP") {
        std::fs::write(file, whole_reference()).unwrap();
    }
}

/// The reference names environment variables (the man pages with clap_mangen's `env`
/// feature, the Markdown with `[env: NAME]`), never the values this machine happens to
/// give them: rendered again in a child process with every such variable set to a
/// sentinel, it is the same.
#[test]
fn the_reference_names_environment_variables_but_never_their_values() {
    let markdown = markdown_reference();
    assert!(markdown.contains("`--keep-last <N>` — "), "{markdown}");
    assert!(markdown.contains("[env: PRUNE_KEEP_LAST]"), "{markdown}");
    let prune = String::from_utf8(man_pages().remove("ingest-backup-prune.1").unwrap()).unwrap();
    assert!(prune.contains("PRUNE_KEEP_LAST"), "{prune}");

    let mut names = BTreeSet::new();
    env_var_names(&ingest_backup::cli::Cli::command(), &mut names);
    assert!(names.len() > 10, "{names:?}");
    let sentinel = "sentinel-value-of-the-environment";
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("reference.txt");
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", "dump_the_reference_for_the_environment_check"]).env("CLI_REFERENCE_DUMP", &dump);
    for name in &names {
        child.env(name, sentinel);
    }
    let output = child.output().unwrap();
    assert!(output.status.success(), "{}", common::all_output(&output));
    let rendered = std::fs::read_to_string(&dump).unwrap();
    assert!(!rendered.contains(sentinel), "an environment value reached the reference:\n{rendered}");
    assert!(rendered == whole_reference(), "with {names:?} set, the reference changed ({})", first_difference(&whole_reference(), &rendered));
}

/// The mdBook binary: `INGEST_TEST_MDBOOK` (exported by `scripts/test-peers.sh env`), else
/// `mdbook` on the `PATH`.
fn mdbook() -> Option<PathBuf> {
    if let Some(path) = common::peer_binary("INGEST_TEST_MDBOOK") {
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("mdbook")).find(|candidate| candidate.is_file())
}

#[test]
fn the_book_builds_with_mdbook() {
    let test = "the_book_builds_with_mdbook";
    let Some(mdbook) = mdbook() else {
        common::skip_or_fail(test, "mdbook is not installed (scripts/test-peers.sh install docs)");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(&mdbook).current_dir(root()).arg("build").arg("docs").arg("--dest-dir").arg(out.path()).output().unwrap();
    let log = common::all_output(&output);
    assert!(output.status.success(), "mdbook build docs:\n{log}");
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
    assert!(warnings.is_empty(), "mdbook build docs warned:\n{}", warnings.join("\n"));
    for page in ["index.html", "reference/cli.html", "guide/backup.html", "operations/kubernetes.html"] {
        assert!(out.path().join(page).is_file(), "the book has no {page}:\n{log}");
    }
}

/// The Markdown files whose links are checked: the README and the other top-level
/// documents, the chart's README and every page of the book.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, into);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                into.push(path);
            }
        }
    }
    let mut files: Vec<PathBuf> =
        ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "ARCHITECTURE.md", "BENCHMARKS.md", "helm/ingest-backup/README.md"]
            .iter()
            .map(|file| root().join(file))
            .filter(|file| file.is_file())
            .collect();
    walk(&root().join("docs/src"), &mut files);
    files.sort();
    files
}

/// The targets of the inline links (`[text](target)`) and reference definitions
/// (`[name]: target`) of a Markdown text, outside code blocks and code spans, with their
/// line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fence: Option<&str> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        // Code spans hold examples, not links.
        let mut prose = String::new();
        for (index, part) in line.split('`').enumerate() {
            if index % 2 == 0 {
                prose.push_str(part);
            }
        }
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("").trim_matches(['<', '>']);
            found.push((number + 1, target.to_string()));
            rest = &after[end..];
        }
        if let Some(definition) = prose.trim_start().strip_prefix('[') {
            if let Some((_, target)) = definition.split_once("]: ") {
                found.push((number + 1, target.split_whitespace().next().unwrap_or("").to_string()));
            }
        }
    }
    found
}

/// The anchors mdBook (and, for these headings, GitHub) gives the headings of a Markdown
/// text: lower case, spaces as `-`, other punctuation dropped, repeats numbered; plus
/// explicit `<a name="...">` and `id="..."` anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        for marker in ["name=\"", "id=\""] {
            let mut rest = line;
            while let Some(start) = rest.find(marker) {
                let after = &rest[start + marker.len()..];
                let end = after.find('"').unwrap_or(after.len());
                found.insert(after[..end].to_string());
                rest = &after[end..];
            }
        }
        let Some(heading) = trimmed.strip_prefix('#') else { continue };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        // The text a reader sees: a link's text, not its target.
        let mut visible = String::new();
        let mut rest = heading.trim();
        while let Some(start) = rest.find("](") {
            visible.push_str(&rest[..start]);
            rest = rest[start..].find(')').map_or("", |end| &rest[start + end + 1..]);
        }
        visible.push_str(rest);
        let id: String = visible
            .trim()
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_lowercase().next().unwrap()),
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect();
        let count = seen.entry(id.clone()).or_insert(0);
        found.insert(if *count == 0 { id.clone() } else { format!("{id}-{count}") });
        *count += 1;
    }
    found
}

#[test]
fn every_relative_link_points_at_an_existing_file_and_heading() {
    let mut problems = Vec::new();
    let files = markdown_files();
    assert!(files.iter().any(|file| file.ends_with("docs/src/SUMMARY.md")), "no docs/src/SUMMARY.md among {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').map_or((target.as_str(), None), |(path, anchor)| (path, Some(anchor)));
            let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            if !resolved.exists() {
                problems.push(format!("{shown}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| resolved.extension().is_some_and(|ext| ext == "md")) {
                let headings = anchors(&std::fs::read_to_string(&resolved).unwrap());
                if !headings.contains(anchor) {
                    problems.push(format!("{shown}:{line}: {target}: no heading with the anchor #{anchor}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

/// Every page of the book is in `SUMMARY.md` (mdBook ignores the others), and every entry
/// there exists.
#[test]
fn every_page_of_the_book_is_in_the_summary() {
    let src = root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = links(&summary).into_iter().map(|(_, target)| src.join(target)).collect();
    let mut missing = Vec::new();
    for file in markdown_files().into_iter().filter(|file| file.starts_with(&src) && !file.ends_with("SUMMARY.md")) {
        if !listed.contains(&file) {
            missing.push(file.strip_prefix(&src).unwrap().display().to_string());
        }
    }
    assert!(missing.is_empty(), "pages of docs/src not in SUMMARY.md: {missing:?}");
    for page in &listed {
        assert!(page.is_file(), "SUMMARY.md lists {}, which does not exist", page.display());
    }
}
