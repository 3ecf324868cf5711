//! Stage `evaluate`: scores the predictions a streaming run wrote at each boundary and
//! compares the methods.
//!
//! VQA: `<stream_dir>/<method>/predictions/boundary-KKK.parquet` (kind `predictions`, the
//! boundary's stream position in metadata `remind.stream_position`) are joined with the
//! questions table on question id; per boundary: accuracy per question type, mean-per-type
//! (MPT) and overall accuracy; per method: Omega, the mean over boundaries of its MPT
//! relative to the offline model's. Outputs: `metrics.json`, `metrics.parquet` (kind
//! `metrics`), the plot `metrics.png` / `metrics.svg` ([`crate::plot`]) and a printed table
//! ([`report`]).
//!
//! Image classification ([`classify_eval`]): the class probabilities stream-train wrote at
//! every evaluation point, scored with [`classification_metrics`] and
//! [`classification_omega`] (top-1 and top-5 on base, non-base and all seen classes).

pub mod cl_metrics;
mod classification;
pub mod classify_eval;
pub mod compute;
pub mod outputs;
pub mod report;
pub mod seeds;
pub mod vqa_cl;

pub use classification::{
    classification_metrics, classification_omega, ClassificationOmega, ClassificationScore,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use arrow::array::{Int32Array, Int64Array, StringArray, UInt64Array};
use serde::{Deserialize, Serialize};

use crate::artifact::atomic::TEMP_PREFIX;
use crate::artifact::schema::require_meta;
use crate::artifact::Table;
use crate::stream::layout::{predictions_index, MethodDir, RunLayout};
use crate::stream::metrics::{above_baseline, omega, vqa_score, VqaScore};
use crate::stream::plan::StreamPlan;

/// Metadata key of a predictions file holding its boundary's stream position.
pub const POSITION_KEY: &str = "remind.stream_position";

/// The top-level key of `metrics.json` that is not a method.
pub const TYPES_KEY: &str = "question_types";

/// What is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Vqa,
    Classification,
}

named_enum!(Task, "task", { Vqa => "vqa", Classification => "classification" });

/// Config section `evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateSettings {
    pub task: Task,
    /// Methods to evaluate, in this order (None: every method folder of the stream folder).
    pub methods: Option<Vec<String>>,
    /// The method Omega divides by (the offline model).
    pub baseline: String,
    /// Split of the questions table the predictions were made on.
    pub split: String,
    /// Evaluate methods that lack some boundaries instead of refusing.
    pub allow_partial: bool,
}

impl Default for EvaluateSettings {
    fn default() -> Self {
        Self {
            task: Task::Vqa,
            methods: None,
            baseline: "offline".into(),
            split: "val".into(),
            allow_partial: false,
        }
    }
}

/// Input artifacts of a VQA evaluation.
pub struct VqaEvalInputs<'a> {
    pub questions: &'a Path,
    /// Type names (kind `vocabulary`, index = type id); without it types are "type N".
    pub question_types: Option<&'a Path>,
    /// Folder holding `plan.json` (optional) and one folder per method.
    pub stream_dir: &'a Path,
}

/// One method's scores at one boundary.
#[derive(Debug, Clone)]
pub struct BoundaryScore {
    /// Boundary index (KKK of the file name).
    pub boundary: usize,
    /// Stream position: training items seen when the predictions were made.
    pub position: u64,
    pub file: PathBuf,
    pub score: VqaScore,
}

/// One method's results.
#[derive(Debug, Clone)]
pub struct MethodResult {
    pub name: String,
    /// In boundary order.
    pub boundaries: Vec<BoundaryScore>,
    pub omega: Option<f64>,
    /// Why Omega is missing, or what it was computed over when not every boundary.
    pub omega_note: Option<String>,
}

impl MethodResult {
    pub fn at(&self, boundary: usize) -> Option<&BoundaryScore> {
        self.boundaries.iter().find(|b| b.boundary == boundary)
    }
}

/// The result of a VQA evaluation.
#[derive(Debug, Clone, Default)]
pub struct VqaEvaluation {
    pub split: String,
    pub baseline: String,
    /// Question type ids scored, ascending, and their names.
    pub type_ids: Vec<i64>,
    pub type_names: Vec<String>,
    /// Questions each prediction file scores, and the split's questions in the table.
    pub questions: usize,
    pub split_questions: usize,
    /// Every boundary index evaluated (by any method) and its stream position.
    pub positions: BTreeMap<usize, u64>,
    /// The question type learned in the segment ending at each boundary (qtype plans).
    pub segment_types: BTreeMap<usize, String>,
    pub methods: Vec<MethodResult>,
    /// Each method's compute from its `complete.json` ([`compute`]), in method order.
    pub compute: Vec<compute::MethodCompute>,
    /// Things the reader should know (partial methods, Omega caveats).
    pub notes: Vec<String>,
}

impl VqaEvaluation {
    pub fn type_name(&self, id: i64) -> &str {
        self.type_ids
            .iter()
            .position(|&t| t == id)
            .map(|i| self.type_names[i].as_str())
            .unwrap_or("?")
    }
}

/// The answer and type of every question of the evaluated split.
struct SplitQuestions {
    by_id: HashMap<u64, (i64, i64)>,
}

fn read_split_questions(path: &Path, split: &str) -> Result<SplitQuestions> {
    let table = Table::read(path, "questions")?;
    for c in ["question_id", "split", "answer_id", "question_type"] {
        table.require_non_null(c)?;
    }
    let qid = table.column::<UInt64Array>("question_id")?;
    let splits = table.column::<StringArray>("split")?;
    let answers = table.column::<Int64Array>("answer_id")?;
    let types = table.column::<Int32Array>("question_type")?;
    let mut by_id = HashMap::new();
    for i in 0..table.num_rows() {
        if splits.value(i) != split {
            continue;
        }
        let id = qid.value(i);
        let (a, t) = (answers.value(i), types.value(i));
        ensure!(
            a >= -1 && t >= 0,
            "{}: question id {id}: expected answer_id >= -1 and question_type >= 0, found \
             answer_id {a}, question_type {t}",
            path.display()
        );
        ensure!(
            by_id.insert(id, (a, i64::from(t))).is_none(),
            "{}: question id {id} occurs twice in split '{split}'",
            path.display()
        );
    }
    ensure!(
        !by_id.is_empty(),
        "{}: no questions of split '{split}'",
        path.display()
    );
    Ok(SplitQuestions { by_id })
}

/// Type id -> name from a question-type table (kind `vocabulary`).
fn read_type_names(path: &Path) -> Result<HashMap<i64, String>> {
    let table = Table::read(path, "vocabulary")?;
    table.require_non_null("index")?;
    table.require_non_null("token")?;
    let index = table.column::<Int64Array>("index")?;
    let token = table.column::<StringArray>("token")?;
    let mut names = HashMap::new();
    for i in 0..table.num_rows() {
        ensure!(
            names
                .insert(index.value(i), token.value(i).to_string())
                .is_none(),
            "{}: type index {} occurs twice",
            path.display(),
            index.value(i)
        );
    }
    Ok(names)
}

/// Method folders under `stream_dir` (those with a `predictions` folder): the usual
/// methods first (remind, finetune), the baseline last, others by name between.
/// A method folder is one holding `outputs(folder)` (its predictions or probabilities
/// folder, as [`RunLayout`] names them).
pub fn discover_methods(
    stream_dir: &Path,
    baseline: &str,
    outputs: impl Fn(&MethodDir) -> PathBuf,
) -> Result<Vec<String>> {
    let d = stream_dir.display();
    let mut found = Vec::new();
    for entry in
        fs::read_dir(stream_dir).with_context(|| format!("cannot list the stream folder {d}"))?
    {
        let entry = entry.with_context(|| format!("cannot list {d}"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with('.') && outputs(&MethodDir::at(&entry.path())).is_dir() {
            found.push(name);
        }
    }
    let example = outputs(&MethodDir::at(Path::new("<method>")));
    ensure!(
        !found.is_empty(),
        "{d}: no method folders ({}/) found",
        example.display()
    );
    let rank = |n: &str| match n {
        "remind" => 0,
        "finetune" => 1,
        b if b == baseline => 3,
        _ => 2,
    };
    found.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    Ok(found)
}

/// Boundary index -> file of one method's predictions folder.
fn boundary_files(stream_dir: &Path, method: &str) -> Result<BTreeMap<usize, PathBuf>> {
    let dir = RunLayout::new(stream_dir).method(method).predictions_dir();
    let d = dir.display();
    ensure!(dir.is_dir(), "method '{method}': {d} does not exist");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {d}"))? {
        let entry = entry.with_context(|| format!("cannot list {d}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        if let Some(k) = predictions_index(&name) {
            if let Some(other) = files.insert(k, entry.path()) {
                bail!("{d}: {} and {name} both hold boundary {k}", other.display());
            }
        }
    }
    ensure!(
        !files.is_empty(),
        "method '{method}': {d} holds no boundary-KKK.parquet files"
    );
    Ok(files)
}

/// One scored predictions file.
struct ScoredFile {
    position: u64,
    /// Sorted question ids it predicts.
    ids: Vec<u64>,
    score: VqaScore,
}

fn score_file(
    path: &Path,
    k: usize,
    questions: &SplitQuestions,
    split: &str,
) -> Result<ScoredFile> {
    let p = path.display();
    let table = Table::read(path, "predictions")?;
    for c in ["id", "predicted", "boundary"] {
        table.require_non_null(c)?;
    }
    let position_text = require_meta(path, table.batch.schema_ref().metadata(), POSITION_KEY)?;
    let position: u64 = position_text.trim().parse().with_context(|| {
        format!(
            "{p}: metadata '{POSITION_KEY}': expected a stream position, found '{position_text}'"
        )
    })?;
    let boundary = table.column::<Int64Array>("boundary")?;
    if let Some(&b) = boundary.values().iter().find(|&&b| b != k as i64) {
        bail!("{p}: column 'boundary' holds {b}, but the file name says boundary {k}");
    }
    let ids = table.column::<UInt64Array>("id")?;
    let predicted = table.column::<Int64Array>("predicted")?;
    ensure!(table.num_rows() > 0, "{p}: no predictions");
    let n = table.num_rows();
    let (mut pred, mut answers, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut unknown: Option<(u64, usize)> = None;
    for i in 0..n {
        let id = ids.value(i);
        match questions.by_id.get(&id) {
            Some(&(a, t)) => {
                let v = predicted.value(i);
                ensure!(
                    v >= 0,
                    "{p}: column 'predicted': question id {id}: expected an answer id >= 0, \
                     found {v}"
                );
                pred.push(v);
                answers.push(a);
                types.push(t);
            }
            None => unknown.get_or_insert((id, 0)).1 += 1,
        }
    }
    if let Some((id, count)) = unknown {
        bail!("{p}: question id {id} is not a '{split}' question of the questions table ({count} unknown id(s) in all)");
    }
    let mut sorted = ids.values().to_vec();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        bail!("{p}: question id {} is predicted more than once", w[0]);
    }
    Ok(ScoredFile {
        position,
        ids: sorted,
        score: vqa_score(&pred, &answers, &types),
    })
}

pub(crate) fn read_plan(stream_dir: &Path) -> Result<Option<StreamPlan>> {
    let path = RunLayout::new(stream_dir).plan();
    if !path.exists() {
        return Ok(None);
    }
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan: StreamPlan = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a stream plan", path.display()))?;
    ensure!(
        !plan.boundaries.is_empty(),
        "{}: the plan has no boundaries",
        path.display()
    );
    Ok(Some(plan))
}

fn join_numbers(v: &[usize]) -> String {
    v.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scores every method's predictions at every boundary and computes Omega.
pub fn evaluate_vqa(inputs: &VqaEvalInputs, s: &EvaluateSettings) -> Result<VqaEvaluation> {
    let dir = inputs.stream_dir;
    let methods = match &s.methods {
        Some(m) => {
            ensure!(!m.is_empty(), "no methods to evaluate");
            let mut seen = BTreeSet::new();
            for name in m {
                ensure!(seen.insert(name), "method '{name}' is listed twice");
            }
            m.clone()
        }
        None => discover_methods(dir, &s.baseline, MethodDir::predictions_dir)?,
    };
    for m in &methods {
        ensure!(
            m != TYPES_KEY,
            "a method may not be called '{TYPES_KEY}' (a reserved key of metrics.json)"
        );
    }
    let questions = read_split_questions(inputs.questions, &s.split)?;
    let plan = read_plan(dir)?;
    let files: Vec<BTreeMap<usize, PathBuf>> = methods
        .iter()
        .map(|m| boundary_files(dir, m))
        .collect::<Result<_>>()?;

    // The boundaries every method should have: the plan's, else those any method has.
    let expected: BTreeSet<usize> = match &plan {
        Some(p) => (0..p.boundaries.len()).collect(),
        None => files.iter().flat_map(|f| f.keys().copied()).collect(),
    };
    let mut notes = Vec::new();
    let mut gaps = Vec::new();
    for (m, f) in methods.iter().zip(&files) {
        if let Some((&k, path)) = f.iter().find(|(k, _)| !expected.contains(k)) {
            bail!(
                "{}: boundary {k} is beyond the {} boundaries of {}",
                path.display(),
                expected.len(),
                dir.join("plan.json").display()
            );
        }
        let missing: Vec<usize> = expected
            .iter()
            .copied()
            .filter(|k| !f.contains_key(k))
            .collect();
        if !missing.is_empty() {
            let paths: Vec<String> = missing
                .iter()
                .map(|&k| {
                    RunLayout::new(dir)
                        .method(m)
                        .predictions(k)
                        .display()
                        .to_string()
                })
                .collect();
            gaps.push(format!(
                "method '{m}' lacks boundaries {} (missing {})",
                join_numbers(&missing),
                paths.join(", ")
            ));
        }
    }
    if !gaps.is_empty() {
        if !s.allow_partial {
            bail!(
                "{}; pass --allow-partial to evaluate the boundaries present",
                gaps.join("; ")
            );
        }
        notes.extend(gaps);
    }

    let mut reference: Option<(PathBuf, Vec<u64>)> = None;
    let mut positions: BTreeMap<usize, (u64, PathBuf)> = BTreeMap::new();
    let mut results = Vec::new();
    for (m, f) in methods.iter().zip(&files) {
        let mut boundaries = Vec::new();
        for (&k, path) in f {
            let scored = score_file(path, k, &questions, &s.split)?;
            match &reference {
                None => reference = Some((path.clone(), scored.ids)),
                Some((first, ids)) if *ids != scored.ids => bail!(
                    "{}: predicts {} questions, but {} predicts {} (or other ones): every file must cover the same questions",
                    path.display(),
                    scored.ids.len(),
                    first.display(),
                    ids.len()
                ),
                Some(_) => {}
            }
            if let Some(p) = &plan {
                let planned = p.boundaries[k] as u64;
                ensure!(
                    scored.position == planned,
                    "{}: metadata '{POSITION_KEY}' is {}, but {} puts boundary {k} at {planned}",
                    path.display(),
                    scored.position,
                    dir.join("plan.json").display()
                );
            }
            match positions.get(&k) {
                Some((pos, other)) if *pos != scored.position => bail!(
                    "{}: boundary {k} is at stream position {}, but {} says {pos}: were they made from different plans?",
                    path.display(),
                    scored.position,
                    other.display()
                ),
                Some(_) => {}
                None => {
                    positions.insert(k, (scored.position, path.clone()));
                }
            }
            boundaries.push(BoundaryScore {
                boundary: k,
                position: scored.position,
                file: path.clone(),
                score: scored.score,
            });
        }
        results.push(MethodResult {
            name: m.clone(),
            boundaries,
            omega: None,
            omega_note: None,
        });
    }
    let scored_ids = reference.map(|(_, ids)| ids).unwrap_or_default();

    // Types scored, with names.
    let mut type_ids: Vec<i64> = scored_ids
        .iter()
        .filter_map(|id| questions.by_id.get(id).map(|q| q.1))
        .collect();
    type_ids.sort_unstable();
    type_ids.dedup();
    let type_names: Vec<String> = match inputs.question_types {
        Some(path) => {
            let names = read_type_names(path)?;
            type_ids
                .iter()
                .map(|t| {
                    names.get(t).cloned().with_context(|| {
                        format!(
                            "{}: no name for question type {t}, which {} uses",
                            path.display(),
                            inputs.questions.display()
                        )
                    })
                })
                .collect::<Result<_>>()?
        }
        None => type_ids.iter().map(|t| format!("type {t}")).collect(),
    };
    if let Some(dup) = type_names
        .iter()
        .enumerate()
        .find(|(i, n)| type_names[..*i].contains(n))
    {
        bail!("question type name '{}' is used by two type ids", dup.1);
    }

    compute_omega(&mut results, &s.baseline, dir);
    let segment_types = match &plan {
        Some(p) => p
            .segment_groups
            .iter()
            .enumerate()
            .filter_map(|(k, g)| {
                let g = (*g)?;
                let name = type_ids
                    .iter()
                    .position(|&t| t == g)
                    .map(|i| type_names[i].clone())
                    .unwrap_or_else(|| format!("type {g}"));
                Some((k, name))
            })
            .collect(),
        None => BTreeMap::new(),
    };
    if scored_ids.len() < questions.by_id.len() {
        notes.push(format!(
            "the predictions cover {} of the {} '{}' questions",
            scored_ids.len(),
            questions.by_id.len(),
            s.split
        ));
    }
    Ok(VqaEvaluation {
        split: s.split.clone(),
        baseline: s.baseline.clone(),
        type_ids,
        type_names,
        questions: scored_ids.len(),
        split_questions: questions.by_id.len(),
        positions: positions.into_iter().map(|(k, (p, _))| (k, p)).collect(),
        segment_types,
        compute: compute::read_compute(dir, methods.iter().map(String::as_str)),
        methods: results,
        notes,
    })
}

/// Warns (stderr) that `method` beats the offline `baseline` at `points`: Omega divides by
/// an upper bound, so it is not meaningful there.
pub fn warn_above_baseline(method: &str, baseline: &str, what: &str, points: &[usize]) {
    if !points.is_empty() {
        eprintln!(
            "evaluate: warning: '{method}' scores above '{baseline}' at {what} {}: the \
             baseline is not an upper bound there, so Omega is not meaningful",
            join_numbers(points)
        );
    }
}

/// Omega of every method against the baseline's MPT at the same boundaries.
fn compute_omega(results: &mut [MethodResult], baseline: &str, dir: &Path) {
    let Some(base) = results.iter().find(|r| r.name == baseline).cloned() else {
        for r in results.iter_mut() {
            r.omega_note = Some(format!(
                "no '{baseline}' method evaluated (no {}): Omega needs the offline model's scores",
                dir.join(baseline).join("predictions").display()
            ));
        }
        return;
    };
    for r in results.iter_mut() {
        let (mut mine, mut theirs, mut ks) = (Vec::new(), Vec::new(), Vec::new());
        for b in &r.boundaries {
            if let Some(o) = base.at(b.boundary) {
                mine.push(b.score.mean_per_type);
                theirs.push(o.score.mean_per_type);
                ks.push(b.boundary);
            }
        }
        r.omega = omega(&mine, &theirs);
        if r.name != baseline {
            warn_above_baseline(
                &r.name,
                baseline,
                "boundaries",
                &above_baseline(&ks, &mine, &theirs),
            );
        }
        let all = r.boundaries.len().max(base.boundaries.len());
        r.omega_note = if ks.is_empty() {
            Some(format!("no boundary in common with '{baseline}'"))
        } else if r.omega.is_none() {
            Some(format!(
                "'{baseline}' has mean-per-type accuracy 0 at every common boundary"
            ))
        } else if ks.len() < all {
            Some(format!("over boundaries {} only", join_numbers(&ks)))
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omega_against_the_baseline_at_common_boundaries() {
        let mk = |name: &str, mpt: &[(usize, f64)]| MethodResult {
            name: name.into(),
            boundaries: mpt
                .iter()
                .map(|&(k, v)| BoundaryScore {
                    boundary: k,
                    position: k as u64 * 10,
                    file: PathBuf::new(),
                    score: VqaScore {
                        per_type: BTreeMap::new(),
                        mean_per_type: v,
                        overall: v,
                    },
                })
                .collect(),
            omega: None,
            omega_note: None,
        };
        let mut r = vec![
            mk("remind", &[(0, 0.5), (1, 0.25)]),
            mk("finetune", &[(1, 0.25)]),
            mk("offline", &[(0, 1.0), (1, 0.5)]),
        ];
        compute_omega(&mut r, "offline", Path::new("s"));
        assert_eq!(r[0].omega, Some(0.5));
        assert_eq!(r[0].omega_note, None);
        assert_eq!(r[1].omega, Some(0.5));
        assert_eq!(r[1].omega_note.as_deref(), Some("over boundaries 1 only"));
        assert_eq!(r[2].omega, Some(1.0));
        let mut no_base = vec![mk("remind", &[(0, 0.5)])];
        compute_omega(&mut no_base, "offline", Path::new("s"));
        assert_eq!(no_base[0].omega, None);
        assert!(no_base[0]
            .omega_note
            .as_deref()
            .unwrap()
            .contains("no 'offline'"));
    }

    #[test]
    fn settings_parse_with_defaults() {
        let s: EvaluateSettings =
            serde_yaml::from_str("methods: [remind, offline]\nallow_partial: true\n").unwrap();
        assert_eq!(
            s.methods.as_deref(),
            Some(&["remind".to_string(), "offline".to_string()][..])
        );
        assert!(s.allow_partial);
        assert_eq!(
            (s.baseline.as_str(), s.split.as_str(), s.task),
            ("offline", "val", Task::Vqa)
        );
        assert!(serde_yaml::from_str::<EvaluateSettings>("method: [x]\n").is_err());
        assert_eq!(
            "classification".parse::<Task>().unwrap(),
            Task::Classification
        );
    }
}
