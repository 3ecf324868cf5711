//! Question generation for mini-CLEVR: templates of CLEVR's five question types, each with
//! a CLEVR functional program and an answer computed from the scene, balanced by greedy
//! rejection sampling so that a question-only model cannot score high.
//!
//! For each question slot the generator draws up to [`CANDIDATES`] valid candidate questions
//! of the slot's type (random template, random attribute filters, unique referents where
//! the program has `unique`) and keeps the one whose answer is the most under-represented
//! so far in its balance group: per template for yes/no questions, per queried attribute
//! for `query_*`, and one group for `count`.

use std::collections::{HashMap, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use super::attributes::Attr;
use super::format::ProgramNode;
use super::scene::Scene;

/// CLEVR's question types, by id (the importer derives the same ids from the programs).
pub const QUESTION_TYPES: [&str; 5] = [
    "count",
    "exist",
    "compare_integer",
    "compare_attribute",
    "query_attribute",
];

/// Candidates drawn per question before the most balancing one is kept.
pub const CANDIDATES: usize = 24;

/// Attribute filters on an object set: (attribute, value index), sorted by attribute.
pub type Filters = Vec<(Attr, usize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Greater,
    Less,
    Equal,
}

impl Compare {
    fn function(self) -> &'static str {
        match self {
            Compare::Greater => "greater_than",
            Compare::Less => "less_than",
            Compare::Equal => "equal_integer",
        }
    }
}

/// What a template asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Count,
    Exist,
    CompareInteger(Compare),
    CompareAttribute(Attr),
    QueryAttribute(Attr),
}

impl Kind {
    /// Index into [`QUESTION_TYPES`].
    pub fn question_type(self) -> usize {
        match self {
            Kind::Count => 0,
            Kind::Exist => 1,
            Kind::CompareInteger(_) => 2,
            Kind::CompareAttribute(_) => 3,
            Kind::QueryAttribute(_) => 4,
        }
    }
}

/// A question template (CLEVR's "question family"). Placeholders: `{a}`/`{b}` singular noun
/// phrases, `{as}`/`{bs}` plural ones, `{an_a}` singular with its article, `{attr}` the
/// attribute's name.
#[derive(Debug, Clone)]
pub struct Family {
    pub kind: Kind,
    pub template: String,
}

/// Every template; a template's index is its `question_family_index`.
pub fn families() -> Vec<Family> {
    let mut out = Vec::new();
    let mut add = |kind: Kind, template: &str| {
        out.push(Family {
            kind,
            template: template.into(),
        })
    };
    for t in [
        "How many {as} are there?",
        "What number of {as} are there?",
        "How many {as} are in the image?",
    ] {
        add(Kind::Count, t);
    }
    for t in [
        "Are there any {as}?",
        "Is there {an_a}?",
        "Are any {as} visible?",
    ] {
        add(Kind::Exist, t);
    }
    for (cmp, templates) in [
        (
            Compare::Greater,
            [
                "Are there more {as} than {bs}?",
                "Is the number of {as} greater than the number of {bs}?",
            ],
        ),
        (
            Compare::Less,
            [
                "Are there fewer {as} than {bs}?",
                "Is the number of {as} less than the number of {bs}?",
            ],
        ),
        (
            Compare::Equal,
            [
                "Are there the same number of {as} and {bs}?",
                "Is the number of {as} the same as the number of {bs}?",
            ],
        ),
    ] {
        for t in templates {
            add(Kind::CompareInteger(cmp), t);
        }
    }
    for attr in Attr::ALL {
        add(
            Kind::CompareAttribute(attr),
            "Does the {a} have the same {attr} as the {b}?",
        );
        add(
            Kind::CompareAttribute(attr),
            if attr == Attr::Material {
                "Is the {a} made of the same material as the {b}?"
            } else {
                "Is the {a} the same {attr} as the {b}?"
            },
        );
    }
    for attr in Attr::ALL {
        add(
            Kind::QueryAttribute(attr),
            if attr == Attr::Material {
                "What is the {a} made of?"
            } else {
                "What {attr} is the {a}?"
            },
        );
        add(Kind::QueryAttribute(attr), "What is the {attr} of the {a}?");
        add(Kind::QueryAttribute(attr), "What's the {attr} of the {a}?");
        add(
            Kind::QueryAttribute(attr),
            "There is {an_a}; what {attr} is it?",
        );
    }
    out
}

/// A generated question before it gets its index and image.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub family: usize,
    pub question_type: usize,
    pub text: String,
    pub program: Vec<ProgramNode>,
    pub answer: String,
    group: usize,
    group_values: usize,
}

/// Objects of `scene` matching every filter.
pub fn select(scene: &Scene, filters: &[(Attr, usize)]) -> Vec<usize> {
    (0..scene.objects.len())
        .filter(|&i| filters.iter().all(|&(a, v)| scene.objects[i].get(a) == v))
        .collect()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

struct Program(Vec<ProgramNode>);

impl Program {
    fn push(&mut self, function: &str, inputs: Vec<usize>, values: Vec<String>) -> usize {
        self.0.push(ProgramNode {
            inputs,
            function: function.into(),
            value_inputs: values,
        });
        self.0.len() - 1
    }

    /// `scene` followed by one `filter_<attr>` node per filter; returns the last node.
    fn select(&mut self, filters: &[(Attr, usize)]) -> usize {
        let mut node = self.push("scene", vec![], vec![]);
        for &(attr, value) in filters {
            node = self.push(
                &format!("filter_{}", attr.name()),
                vec![node],
                vec![attr.values()[value].into()],
            );
        }
        node
    }

    /// The set, `unique`, then `query_<attr>`; returns the query node.
    fn query(&mut self, filters: &[(Attr, usize)], attr: Attr) -> usize {
        let set = self.select(filters);
        let one = self.push("unique", vec![set], vec![]);
        self.push(&format!("query_{}", attr.name()), vec![one], vec![])
    }
}

fn adjective<R: Rng>(attr: Attr, value: usize, rng: &mut R) -> &'static str {
    let options: &[&'static str] = match (attr, attr.values()[value]) {
        (Attr::Size, "large") => &["large", "big"],
        (Attr::Size, _) => &["small", "tiny"],
        (Attr::Material, "rubber") => &["rubber", "matte"],
        (Attr::Material, _) => &["metal", "shiny", "metallic"],
        (a, _) => return a.values()[value],
    };
    options.choose(rng).copied().unwrap_or(options[0])
}

fn noun<R: Rng>(shape: Option<usize>, rng: &mut R) -> &'static str {
    let options: &[&'static str] = match shape.map(|v| Attr::Shape.values()[v]) {
        Some("cube") => &["cube", "block"],
        Some("sphere") => &["sphere", "ball"],
        Some(_) => &["cylinder"],
        None => &["thing", "object"],
    };
    options.choose(rng).copied().unwrap_or(options[0])
}

/// "large red rubber cube", "small things", ...
fn noun_phrase<R: Rng>(filters: &[(Attr, usize)], plural: bool, rng: &mut R) -> String {
    let mut words: Vec<String> = filters
        .iter()
        .filter(|(a, _)| *a != Attr::Shape)
        .map(|&(a, v)| adjective(a, v, rng).to_string())
        .collect();
    let shape = filters
        .iter()
        .find(|(a, _)| *a == Attr::Shape)
        .map(|&(_, v)| v);
    let mut n = noun(shape, rng).to_string();
    if plural {
        n.push('s');
    }
    words.push(n);
    words.join(" ")
}

fn with_article(np: &str) -> String {
    let vowel = np.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {np}", if vowel { "an" } else { "a" })
}

fn fill<R: Rng>(
    template: &str,
    a: &[(Attr, usize)],
    b: &[(Attr, usize)],
    attr: Option<Attr>,
    rng: &mut R,
) -> String {
    let mut text = template.to_string();
    if text.contains("{as}") {
        text = text.replace("{as}", &noun_phrase(a, true, rng));
    }
    if text.contains("{an_a}") {
        text = text.replace("{an_a}", &with_article(&noun_phrase(a, false, rng)));
    }
    if text.contains("{a}") {
        text = text.replace("{a}", &noun_phrase(a, false, rng));
    }
    if text.contains("{bs}") {
        text = text.replace("{bs}", &noun_phrase(b, true, rng));
    }
    if text.contains("{b}") {
        text = text.replace("{b}", &noun_phrase(b, false, rng));
    }
    if let Some(attr) = attr {
        text = text.replace("{attr}", attr.name());
    }
    text
}

/// `n` filters on distinct attributes: half the time the values of one object of the scene
/// (so the set is not empty), otherwise random values.
fn random_filters<R: Rng>(scene: &Scene, n: usize, rng: &mut R) -> Filters {
    let mut attrs = Attr::ALL.to_vec();
    attrs.shuffle(rng);
    attrs.truncate(n);
    attrs.sort();
    let from_object = scene.objects.choose(rng).filter(|_| rng.random_bool(0.5));
    attrs
        .into_iter()
        .map(|a| {
            let v = match from_object {
                Some(o) => o.get(a),
                None => rng.random_range(0..a.values().len()),
            };
            (a, v)
        })
        .collect()
}

/// 1 or 2 filters, none on `exclude`, that pick out object `target` alone.
fn unique_filters<R: Rng>(
    scene: &Scene,
    target: usize,
    exclude: Attr,
    rng: &mut R,
) -> Option<Filters> {
    let attrs: Vec<Attr> = Attr::ALL.into_iter().filter(|&a| a != exclude).collect();
    let mut options: Vec<Vec<Attr>> = attrs.iter().map(|&a| vec![a]).collect();
    for i in 0..attrs.len() {
        for j in i + 1..attrs.len() {
            options.push(vec![attrs[i], attrs[j]]);
        }
    }
    options.shuffle(rng);
    let obj = &scene.objects[target];
    options.into_iter().find_map(|set| {
        let filters: Filters = set.into_iter().map(|a| (a, obj.get(a))).collect();
        (select(scene, &filters) == [target]).then_some(filters)
    })
}

fn is_subset(a: &[(Attr, usize)], b: &[(Attr, usize)]) -> bool {
    a.iter().all(|f| b.contains(f))
}

/// One candidate question of template `family` about `scene`, if the draw is valid.
pub fn candidate<R: Rng>(
    families: &[Family],
    family: usize,
    scene: &Scene,
    rng: &mut R,
) -> Option<Generated> {
    let kind = families[family].kind;
    let template = &families[family].template;
    let mut prog = Program(Vec::new());
    let (text, answer, group, group_values) = match kind {
        Kind::Count => {
            let n = rng.random_range(0..=2);
            let f = random_filters(scene, n, rng);
            let set = prog.select(&f);
            prog.push("count", vec![set], vec![]);
            let answer = select(scene, &f).len().to_string();
            (fill(template, &f, &[], None, rng), answer, 1000, 11)
        }
        Kind::Exist => {
            let n = rng.random_range(1..=2);
            let f = random_filters(scene, n, rng);
            let set = prog.select(&f);
            prog.push("exist", vec![set], vec![]);
            let answer = yes_no(!select(scene, &f).is_empty());
            (fill(template, &f, &[], None, rng), answer, family, 2)
        }
        Kind::CompareInteger(cmp) => {
            let na = rng.random_range(1..=2);
            let nb = rng.random_range(1..=2);
            let fa = random_filters(scene, na, rng);
            let fb = random_filters(scene, nb, rng);
            if is_subset(&fa, &fb) || is_subset(&fb, &fa) {
                return None;
            }
            let sa = prog.select(&fa);
            let ca = prog.push("count", vec![sa], vec![]);
            let sb = prog.select(&fb);
            let cb = prog.push("count", vec![sb], vec![]);
            prog.push(cmp.function(), vec![ca, cb], vec![]);
            let (x, y) = (select(scene, &fa).len(), select(scene, &fb).len());
            let answer = yes_no(match cmp {
                Compare::Greater => x > y,
                Compare::Less => x < y,
                Compare::Equal => x == y,
            });
            (fill(template, &fa, &fb, None, rng), answer, family, 2)
        }
        Kind::CompareAttribute(attr) => {
            let n = scene.objects.len();
            if n < 2 {
                return None;
            }
            let first = rng.random_range(0..n);
            let others: Vec<usize> = (0..n).filter(|&i| i != first).collect();
            let same: Vec<usize> = others
                .iter()
                .copied()
                .filter(|&i| scene.objects[i].get(attr) == scene.objects[first].get(attr))
                .collect();
            let pool = if !same.is_empty() && rng.random_bool(0.5) {
                &same
            } else {
                &others
            };
            let second = *pool.choose(rng)?;
            let fa = unique_filters(scene, first, attr, rng)?;
            let fb = unique_filters(scene, second, attr, rng)?;
            let qa = prog.query(&fa, attr);
            let qb = prog.query(&fb, attr);
            prog.push(&format!("equal_{}", attr.name()), vec![qa, qb], vec![]);
            let answer = yes_no(scene.objects[first].get(attr) == scene.objects[second].get(attr));
            (fill(template, &fa, &fb, Some(attr), rng), answer, family, 2)
        }
        Kind::QueryAttribute(attr) => {
            let target = rng.random_range(0..scene.objects.len().max(1));
            if target >= scene.objects.len() {
                return None;
            }
            let f = unique_filters(scene, target, attr, rng)?;
            prog.query(&f, attr);
            let answer = scene.objects[target].value(attr).to_string();
            (
                fill(template, &f, &[], Some(attr), rng),
                answer,
                2000 + attr.index(),
                attr.values().len(),
            )
        }
    };
    Some(Generated {
        family,
        question_type: kind.question_type(),
        text: capitalize(&text),
        program: prog.0,
        answer,
        group,
        group_values,
    })
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Answer counts per balance group, for the greedy choice among candidates.
#[derive(Debug, Default)]
pub struct Balancer {
    counts: HashMap<(usize, String), u64>,
    totals: HashMap<usize, u64>,
}

impl Balancer {
    /// How far `g`'s answer is above its group's uniform share so far.
    fn excess(&self, g: &Generated) -> f64 {
        let count = self
            .counts
            .get(&(g.group, g.answer.clone()))
            .copied()
            .unwrap_or(0);
        let total = self.totals.get(&g.group).copied().unwrap_or(0);
        count as f64 - total as f64 / g.group_values as f64
    }

    fn record(&mut self, g: &Generated) {
        *self.counts.entry((g.group, g.answer.clone())).or_default() += 1;
        *self.totals.entry(g.group).or_default() += 1;
    }
}

/// Generates one question per entry of `slot_types` (question type ids) about `scene`: no
/// two with the same text; a slot whose type has no valid question on this scene moves to
/// the next type.
pub fn questions_for_scene<R: Rng>(
    families: &[Family],
    scene: &Scene,
    slot_types: &[usize],
    balancer: &mut Balancer,
    rng: &mut R,
) -> Vec<Generated> {
    let mut by_type: Vec<Vec<usize>> = vec![Vec::new(); QUESTION_TYPES.len()];
    for (i, f) in families.iter().enumerate() {
        by_type[f.kind.question_type()].push(i);
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for &slot in slot_types {
        for shift in 0..QUESTION_TYPES.len() {
            let qtype = (slot + shift) % QUESTION_TYPES.len();
            let mut best: Option<(f64, Generated)> = None;
            for _ in 0..CANDIDATES {
                let Some(&family) = by_type[qtype].choose(rng) else {
                    break;
                };
                let Some(c) = candidate(families, family, scene, rng) else {
                    continue;
                };
                if seen.contains(&c.text) {
                    continue;
                }
                let score = balancer.excess(&c);
                if best.as_ref().is_none_or(|(s, _)| score < *s) {
                    best = Some((score, c));
                }
            }
            if let Some((_, chosen)) = best {
                balancer.record(&chosen);
                seen.insert(chosen.text.clone());
                out.push(chosen);
                break;
            }
        }
    }
    out
}
