use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::testing::tch_rng_lock;
use crate::train::optim::{OptimKind, Optimizer};

fn config(kind: ModelKind, input: QuestionInput) -> ModelConfig {
    ModelConfig {
        kind,
        in_channels: 8,
        dim: 32,
        steps: 3,
        embed_dim: 16,
        lstm_hidden: 16,
        dropout: 0.15,
        num_answers: 5,
        vocab_size: 12,
        question_input: input,
        gensen_dim: 24,
        l2_normalize_features: kind == ModelKind::UpDown,
        freeze_embeddings: false,
        glimpses: 2,
        fusion: Fusion::GatedTanh,
    }
}

fn all_configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for kind in [ModelKind::SMac, ModelKind::UpDown] {
        for input in [QuestionInput::Tokens, QuestionInput::Gensen] {
            out.push(config(kind, input));
        }
    }
    out
}

fn build(cfg: &ModelConfig, seed: i64) -> (VarStore, VqaModel) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = VqaModel::new(&vs.root(), cfg, None).unwrap();
    (vs, model)
}

/// A batch: features, tokens (garbage past each length), lengths, sentence vectors.
struct Batch {
    feats: Tensor,
    tokens: Tensor,
    lengths: Tensor,
    sentences: Tensor,
}

impl Batch {
    fn new(cfg: &ModelConfig, lengths: &[i64], t: i64) -> Self {
        let b = lengths.len() as i64;
        Self {
            feats: Tensor::randn(
                [b, cfg.in_channels as i64, 3, 4],
                (Kind::Float, Device::Cpu),
            ),
            tokens: Tensor::randint_low(
                1,
                cfg.vocab_size as i64,
                [b, t],
                (Kind::Int64, Device::Cpu),
            ),
            lengths: Tensor::from_slice(lengths),
            sentences: Tensor::randn([b, cfg.gensen_dim as i64], (Kind::Float, Device::Cpu)),
        }
    }
    fn questions(&self, cfg: &ModelConfig) -> Questions<'_> {
        match cfg.question_input {
            QuestionInput::Tokens => Questions::Tokens {
                tokens: &self.tokens,
                lengths: &self.lengths,
            },
            QuestionInput::Gensen => Questions::Sentences(&self.sentences),
        }
    }
    fn run(&self, model: &VqaModel, train: bool) -> Tensor {
        model
            .forward_t(&self.feats, &self.questions(model.config()), train)
            .unwrap()
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn output_shapes() {
    let _rng = tch_rng_lock();
    for cfg in all_configs() {
        let (_vs, model) = build(&cfg, 0);
        let batch = Batch::new(&cfg, &[3, 1, 5, 2], 5);
        for train in [false, true] {
            let y = batch.run(&model, train);
            assert_eq!(y.size(), [4, 5], "{cfg:?}");
            assert_eq!(y.kind(), Kind::Float);
            assert!(bool::try_from(y.isfinite().all()).unwrap());
        }
    }
}

#[test]
fn padding_does_not_change_outputs() {
    let _rng = tch_rng_lock();
    for kind in [ModelKind::SMac, ModelKind::UpDown] {
        let cfg = config(kind, QuestionInput::Tokens);
        let (_vs, model) = build(&cfg, 1);
        let lengths = [3i64, 5, 1, 2];
        let short = Batch::new(&cfg, &lengths, 5);
        let y = short.run(&model, false);
        // Same questions with 4 more positions of garbage (and zero) tokens.
        let extra = Tensor::randint_low(0, 12, [4, 4], (Kind::Int64, Device::Cpu));
        let long = Batch {
            tokens: Tensor::cat(&[&short.tokens, &extra], 1),
            feats: short.feats.shallow_clone(),
            lengths: short.lengths.shallow_clone(),
            sentences: short.sentences.shallow_clone(),
        };
        let y_long = long.run(&model, false);
        assert!(max_diff(&y, &y_long) < 1e-5, "{kind:?}");
        // Each question alone, unpadded, gives its row of the batch.
        for (i, &len) in lengths.iter().enumerate() {
            let i = i as i64;
            let one = Batch {
                feats: short.feats.narrow(0, i, 1),
                tokens: short.tokens.narrow(0, i, 1).narrow(1, 0, len),
                lengths: Tensor::from_slice(&[len]),
                sentences: short.sentences.narrow(0, i, 1),
            };
            let y_one = one.run(&model, false);
            assert!(
                max_diff(&y_one, &y.narrow(0, i, 1)) < 1e-5,
                "{kind:?} row {i}"
            );
        }
    }
}

#[test]
fn question_encoder_states() {
    let _rng = tch_rng_lock();
    tch::manual_seed(2);
    let vs = VarStore::new(Device::Cpu);
    let enc = QuestionEncoder::new(&vs.root(), 10, 6, 4, None, true).unwrap();
    let tokens = Tensor::from_slice(&[3i64, 4, 5, 0, 7, 8, 0, 0]).view([2, 4]);
    let lengths = Tensor::from_slice(&[3i64, 2]);
    let q = enc.forward(&tokens, &lengths).unwrap();
    assert_eq!(q.words.size(), [2, 4, 8]);
    assert_eq!(q.vector.size(), [2, 8]);
    // Zero states past the length; the vector is [fwd at last token, bwd at first].
    assert_eq!(
        f64::try_from(q.words.get(1).narrow(0, 2, 2).abs().sum(Kind::Float)).unwrap(),
        0.0
    );
    let w = q.words.get(0);
    let expect = Tensor::cat(&[w.get(2).narrow(0, 0, 4), w.get(0).narrow(0, 4, 4)], 0);
    assert!(max_diff(&expect, &q.vector.get(0)) < 1e-7);
    // Frozen embeddings are not trainable but are saved.
    assert!(vs.trainable_variables().len() == 8);
    assert!(vs.variables().contains_key("embedding.weight"));
    let e = enc
        .forward(&tokens, &Tensor::from_slice(&[0i64, 2]))
        .unwrap_err();
    assert!(e.to_string().contains("1..=4"), "{e}");
    let bad = Tensor::from_slice(&[3i64, 10, 5, 0, 7, 8, 0, 0]).view([2, 4]);
    let e = enc.forward(&bad, &lengths).unwrap_err();
    assert!(e.to_string().contains("0..10"), "{e}");
    // A token beyond the length may be anything, even outside the vocabulary.
    let ok = Tensor::from_slice(&[3i64, 4, 5, 99, 7, 8, 99, 0]).view([2, 4]);
    let q2 = enc.forward(&ok, &lengths).unwrap();
    assert!(max_diff(&q.vector, &q2.vector) < 1e-7);
}

#[test]
fn word_vectors_initialise_embeddings() {
    let _rng = tch_rng_lock();
    let vs = VarStore::new(Device::Cpu);
    let vectors = Tensor::arange(30, (Kind::Float, Device::Cpu)).view([5, 6]);
    let _ = QuestionEncoder::new(&vs.root(), 5, 6, 4, Some(&vectors), false).unwrap();
    let w = vs.variables()["embedding.weight"].shallow_clone();
    assert!(w.requires_grad());
    assert_eq!(f64::try_from(w.get(0).abs().sum(Kind::Float)).unwrap(), 0.0);
    assert!(max_diff(&w.narrow(0, 1, 4), &vectors.narrow(0, 1, 4)) == 0.0);
    let vs2 = VarStore::new(Device::Cpu);
    let e = QuestionEncoder::new(&vs2.root(), 6, 6, 4, Some(&vectors), false).unwrap_err();
    assert!(e.to_string().contains("[6, 6]"), "{e}");
}

#[test]
fn deterministic_under_manual_seed() {
    let _rng = tch_rng_lock();
    for cfg in all_configs() {
        let run = || {
            let (_vs, model) = build(&cfg, 3);
            let batch = Batch::new(&cfg, &[2, 4, 3], 4);
            (batch.run(&model, true), batch.run(&model, false))
        };
        let (a_train, a_eval) = run();
        let (b_train, b_eval) = run();
        assert_eq!(max_diff(&a_train, &b_train), 0.0, "{cfg:?}");
        assert_eq!(max_diff(&a_eval, &b_eval), 0.0, "{cfg:?}");
        assert!(
            max_diff(&a_train, &a_eval) > 0.0,
            "dropout has no effect: {cfg:?}"
        );
    }
}

#[test]
fn rejects_mismatched_inputs() {
    let _rng = tch_rng_lock();
    let cfg = config(ModelKind::SMac, QuestionInput::Tokens);
    let (_vs, model) = build(&cfg, 4);
    let batch = Batch::new(&cfg, &[2, 3], 3);
    let q = batch.questions(&cfg);
    let err =
        |feats: &Tensor, q: &Questions| model.forward_t(feats, q, false).unwrap_err().to_string();
    let e = err(&Tensor::zeros([2, 7, 3, 3], (Kind::Float, Device::Cpu)), &q);
    assert!(e.contains("C = 8"), "{e}");
    let e = err(&Tensor::zeros([3, 8, 3, 3], (Kind::Float, Device::Cpu)), &q);
    assert!(e.contains("batch of 3"), "{e}");
    let e = err(&batch.feats, &Questions::Sentences(&batch.sentences));
    assert!(e.contains("question_input: tokens"), "{e}");
    let e = err(&batch.feats.to_kind(Kind::Int64), &q);
    assert!(e.contains("float"), "{e}");
    let bad = ModelConfig {
        steps: 0,
        ..cfg.clone()
    };
    let vs = VarStore::new(Device::Cpu);
    assert!(VqaModel::new(&vs.root(), &bad, None).is_err());
}

#[test]
fn config_from_yaml() {
    let _rng = tch_rng_lock();
    let cfg: ModelConfig = serde_yaml::from_str(
        "kind: updown\nquestion_input: gensen\nfusion: relu\nnum_answers: 1480\nl2_normalize_features: true",
    )
    .unwrap();
    assert_eq!(cfg.kind, ModelKind::UpDown);
    assert_eq!(cfg.question_input, QuestionInput::Gensen);
    assert_eq!(cfg.fusion, Fusion::Relu);
    assert_eq!(cfg.dim, 512);
    cfg.validate().unwrap();
    assert!(serde_yaml::from_str::<ModelConfig>("dims: 3").is_err());
    let e = ModelConfig::default().validate().unwrap_err().to_string();
    assert!(e.contains("vocab_size"), "{e}");
}

#[test]
fn safetensors_round_trip() {
    let _rng = tch_rng_lock();
    let cfg = config(ModelKind::SMac, QuestionInput::Tokens);
    let (vs, model) = build(&cfg, 5);
    let batch = Batch::new(&cfg, &[2, 3], 3);
    let y = batch.run(&model, false);
    let path = std::env::temp_dir().join(format!("remind-vqa-{}.safetensors", std::process::id()));
    vs.save(&path).unwrap();
    let (mut vs2, model2) = build(&cfg, 6);
    assert!(max_diff(&y, &batch.run(&model2, false)) > 0.0);
    vs2.load(&path).unwrap();
    assert_eq!(max_diff(&y, &batch.run(&model2, false)), 0.0);
    std::fs::remove_file(&path).unwrap();
}

/// 16 examples whose answer is 2 * (question type) + (image bit): the model must use both.
fn overfit(kind: ModelKind, input: QuestionInput) -> usize {
    tch::manual_seed(11);
    let mut cfg = config(kind, input);
    cfg.dropout = 0.0;
    cfg.steps = 2;
    cfg.num_answers = 4;
    let n = 16i64;
    let bit = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
    let qtype = Tensor::arange(n, (Kind::Int64, Device::Cpu))
        .divide_scalar_mode(2, "floor")
        .remainder(2);
    let answers = &qtype * 2 + &bit;
    let feats = Tensor::randn([n, 8, 3, 4], (Kind::Float, Device::Cpu)) * 0.5;
    let _ = feats
        .narrow(1, 0, 1)
        .g_add_(&(bit.to_kind(Kind::Float) * 2.0 - 1.0).view([n, 1, 1, 1]));
    let tokens = Tensor::randint_low(3, 12, [n, 6], (Kind::Int64, Device::Cpu));
    tokens.narrow(1, 0, 1).copy_(&(&qtype + 1).view([n, 1]));
    let lengths = Tensor::randint_low(2, 7, [n], (Kind::Int64, Device::Cpu));
    let sentences = Tensor::randn([n, 24], (Kind::Float, Device::Cpu));
    let _ = sentences
        .narrow(1, 0, 1)
        .g_add_(&(qtype.to_kind(Kind::Float) * 4.0 - 2.0).view([n, 1]));
    let questions = match input {
        QuestionInput::Tokens => Questions::Tokens {
            tokens: &tokens,
            lengths: &lengths,
        },
        QuestionInput::Gensen => Questions::Sentences(&sentences),
    };
    let vs = VarStore::new(Device::Cpu);
    let model = VqaModel::new(&vs.root(), &cfg, None).unwrap();
    let mut opt = Optimizer::new(&vs, OptimKind::adamax());
    for step in 1..=300 {
        let logits = model.forward_t(&feats, &questions, true).unwrap();
        let loss = logits.cross_entropy_for_logits(&answers);
        opt.backward_step(&loss, 1e-2).unwrap();
        if step % 10 == 0 {
            let pred = model
                .forward_t(&feats, &questions, false)
                .unwrap()
                .argmax(1, false);
            if bool::try_from(pred.eq_tensor(&answers).all()).unwrap() {
                return step;
            }
        }
    }
    panic!("{kind:?}/{input:?} did not fit 16 examples in 300 steps");
}

#[test]
fn smac_overfits_tiny_set() {
    let _rng = tch_rng_lock();
    for input in [QuestionInput::Tokens, QuestionInput::Gensen] {
        let steps = overfit(ModelKind::SMac, input);
        eprintln!("S-MAC {input:?}: 100% train accuracy after {steps} steps");
    }
}

#[test]
fn updown_overfits_tiny_set() {
    let _rng = tch_rng_lock();
    for input in [QuestionInput::Tokens, QuestionInput::Gensen] {
        let steps = overfit(ModelKind::UpDown, input);
        eprintln!("UpDown {input:?}: 100% train accuracy after {steps} steps");
    }
}
