//! Every section of a pipeline file read into its stage's settings at once, before the
//! first stage runs (`remind-artifact sections`, which `make` calls first): a typo in
//! `fit_pq` would otherwise show only when fit-pq runs, after hours of feature extraction.

use std::path::Path;

use anyhow::{bail, Result};
use remind::run::load_section;
use serde::de::DeserializeOwned;

/// Reads section `section` of `config` as `T`, adding the error's text to `errors`.
fn check<T: DeserializeOwned + Default>(config: &Path, section: &str, errors: &mut Vec<String>) {
    if let Err(e) = load_section::<T>(Some(config), section) {
        errors.push(format!("{e:#}"));
    }
}

/// Reads every stage's section of `config` into its settings type (unknown keys, values of
/// the wrong type or range: every one reported, each with its section and key). The VQA
/// stream's settings are also checked for values no run can use.
pub fn check_sections(config: &Path) -> Result<()> {
    use remind::backbone::{classifier, features, scenes};
    use remind::data::{clevr, core50, gensen, images, questions};
    let mut errors = Vec::new();
    let c = config;
    check::<remind::diag::synth::SynthConfig>(c, "synth_features", &mut errors);
    check::<remind::pq::PqParams>(c, "fit_pq", &mut errors);
    check::<remind::codes::extract_codes::ExtractCodesConfig>(c, "extract_codes", &mut errors);
    check::<clevr::GenerateClevrConfig>(c, "generate_clevr", &mut errors);
    check::<core50::generate::GenerateCore50Config>(c, "generate_core50", &mut errors);
    check::<questions::ImportQuestionsConfig>(c, "import_questions", &mut errors);
    check::<images::ImportImagesConfig>(c, "import_images", &mut errors);
    check::<scenes::TrainBackboneConfig>(c, "train_backbone", &mut errors);
    check::<features::ExtractConfig>(c, "extract_features", &mut errors);
    check::<gensen::ImportGensenConfig>(c, "import_gensen", &mut errors);
    check::<classifier::TrainClassifierConfig>(c, "train_classifier", &mut errors);
    check::<remind::stream::classify::ClassifySettings>(c, "classify_stream", &mut errors);
    check::<remind::models::vqa::ModelConfig>(c, "model", &mut errors);
    check::<remind::evaluate::EvaluateSettings>(c, "evaluate", &mut errors);
    match load_section::<remind::stream::vqa::StreamSettings>(Some(c), "stream") {
        Ok(s) => {
            if let Err(e) = s.validate() {
                errors.push(format!("{}: {e:#}", c.display()));
            }
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    // A wrong top-level key (a misspelt section) is found by every section's reader: once.
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}
