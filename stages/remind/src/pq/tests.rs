use super::*;

fn clustered(n: i64, d: i64, seed: i64) -> Tensor {
    let _rng = crate::testing::tch_rng_lock();
    tch::manual_seed(seed);
    let centers = Tensor::randn([20, d], (Kind::Float, Device::Cpu)) * 3.0;
    let idx = Tensor::randint(20, [n], (Kind::Int64, Device::Cpu));
    centers.index_select(0, &idx) + Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * 0.3
}

fn small() -> PqParams {
    PqParams {
        num_subspaces: 4,
        nbits: 4,
        iterations: 10,
        max_points_per_centroid: 64,
        seed: 7,
        ..PqParams::default()
    }
}

#[test]
fn encode_picks_the_nearest_centroid_and_decode_reconstructs() {
    let x = clustered(700, 16, 1);
    let (pq, stats) = ProductQuantizer::fit(&x, &small()).unwrap();
    assert_eq!(stats.train_vectors, 700); // under the 64 x 16 subsample limit
    let codes = pq.encode(&x).unwrap();
    assert_eq!(codes.size(), vec![700, 4]);
    // Brute-force nearest centroid per sub-space, one vector at a time.
    let c = pq.centroids();
    for i in [0i64, 13, 699] {
        for m in 0..4i64 {
            let sub = x.get(i).narrow(0, m * 4, 4);
            let d = (c.get(m) - sub.unsqueeze(0)).square().sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Float,
            );
            let best = d.argmin(0, false).int64_value(&[]);
            assert_eq!(codes.int64_value(&[i, m]), best, "vector {i} sub-space {m}");
        }
    }
    let rec = pq.decode(&codes).unwrap();
    let mse = (&x - &rec).square().sum(Kind::Double).double_value(&[]) / 700.0;
    assert!((mse - pq.mse(&x).unwrap()).abs() < 1e-6 * mse.max(1.0));
    // Clustered data: PQ with 16 centroids per 4-dim sub-space reconstructs well.
    let var = (&x - x.mean_dim(0, true, Kind::Float))
        .square()
        .sum(Kind::Double)
        .double_value(&[])
        / 700.0;
    assert!(mse < 0.2 * var, "mse {mse} vs variance {var}");
}

#[test]
fn fit_is_deterministic_for_a_seed() {
    let x = clustered(2000, 16, 2);
    let (a, _) = ProductQuantizer::fit(&x, &small()).unwrap();
    let (b, _) = ProductQuantizer::fit(&x, &small()).unwrap();
    assert!(a.centroids().equal(b.centroids()));
    let (c, _) = ProductQuantizer::fit(&x, &PqParams { seed: 8, ..small() }).unwrap();
    assert!(!a.centroids().equal(c.centroids()));
}

#[test]
fn empty_clusters_are_split() {
    // 64 distinct points repeated: many initial centroids coincide and end up empty.
    let base = clustered(20, 8, 3);
    let x = base.repeat([10, 1]);
    let p = PqParams {
        num_subspaces: 2,
        nbits: 4,
        iterations: 5,
        max_points_per_centroid: 256,
        seed: 1,
        ..PqParams::default()
    };
    let (pq, stats) = ProductQuantizer::fit(&x, &p).unwrap();
    assert!(stats.empty_cluster_splits > 0, "{stats:?}");
    assert_eq!(first_non_finite(&pq.centroids().view([-1, 4])), None);
}

#[test]
fn bad_parameters_are_refused() {
    let x = clustered(100, 10, 4);
    let err = ProductQuantizer::fit(
        &x,
        &PqParams {
            num_subspaces: 4,
            ..small()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not divisible"), "{err}");
    let x = clustered(100, 16, 4);
    let err = ProductQuantizer::fit(
        &x,
        &PqParams {
            nbits: 9,
            ..small()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("nbits"), "{err}");
    let err = ProductQuantizer::fit(&x.narrow(0, 0, 10), &small()).unwrap_err();
    assert!(
        err.to_string().contains("fewer than the 16 centroids"),
        "{err}"
    );
}

#[test]
fn faiss_bytes_round_trip() {
    let x = clustered(300, 16, 5);
    let (pq, _) = ProductQuantizer::fit(&x, &small()).unwrap();
    let bytes = to_faiss_bytes(&pq).unwrap();
    let back = from_faiss_bytes(&bytes, "mem").unwrap();
    assert!(back.centroids().equal(pq.centroids()));
    assert!(from_faiss_bytes(&bytes[..bytes.len() - 4], "mem").is_err());
}

#[test]
fn non_finite_vectors_are_located() {
    let x = clustered(10, 4, 6);
    assert_eq!(first_non_finite(&x), None);
    let _ = x.get(7).get(2).fill_(f64::NAN);
    assert_eq!(first_non_finite(&x), Some(7));
}

/// Vectors whose variance sits in a few correlated directions: what OPQ is for.
fn correlated(n: i64, d: i64, seed: i64) -> Tensor {
    let _rng = crate::testing::tch_rng_lock();
    tch::manual_seed(seed);
    let basis = Tensor::randn([4, d], (Kind::Float, Device::Cpu));
    let z = Tensor::randn([n, 4], (Kind::Float, Device::Cpu)) * 3.0;
    z.matmul(&basis) + Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * 0.05
}

#[test]
fn opq_rotation_is_orthogonal_lowers_the_error_and_round_trips() {
    let x = correlated(3000, 16, 5);
    let base = PqParams {
        num_subspaces: 4,
        nbits: 4,
        iterations: 10,
        seed: 3,
        ..PqParams::default()
    };
    let (pq, stats) = ProductQuantizer::fit(&x, &base).unwrap();
    let opq_params = PqParams {
        opq: true,
        opq_iterations: 8,
        ..base.clone()
    };
    let (opq, opq_stats) = ProductQuantizer::fit(&x, &opq_params).unwrap();
    let r = opq.rotation().unwrap();
    let eye = Tensor::eye(16, (Kind::Float, Device::Cpu));
    let err = f64::try_from((r.transpose(0, 1).matmul(r) - eye).abs().max()).unwrap();
    assert!(err < 1e-4, "{err}");
    let (plain, rotated) = (pq.mse(&x).unwrap(), opq.mse(&x).unwrap());
    assert!(
        rotated < plain * 0.9,
        "OPQ should lower the error on correlated data: {rotated} vs {plain}"
    );
    assert!(opq_stats.train_mse < stats.train_mse);
    // The slice paths (what extract-codes and streaming use) agree with the tensor paths.
    let flat = Vec::<f32>::try_from(&x.narrow(0, 0, 50).contiguous().view([-1])).unwrap();
    let codes = opq.encode_slice(&flat).unwrap();
    let tensor_codes = opq.encode(&x.narrow(0, 0, 50)).unwrap();
    assert_eq!(
        codes,
        Vec::<u8>::try_from(&tensor_codes.view([-1])).unwrap()
    );
    let mut out = vec![0f32; 50 * 16];
    opq.decode_into(&codes, &mut out).unwrap();
    let dec = opq.decode(&tensor_codes).unwrap();
    let diff = (Tensor::from_slice(&out).view([50, 16]) - dec).abs().max();
    assert!(f64::try_from(diff).unwrap() < 1e-5);
    // A rotation changes the codebook hash; faiss's PQ format cannot hold it.
    assert_ne!(opq.hash().unwrap(), pq.hash().unwrap());
    assert!(to_faiss_bytes(&opq)
        .unwrap_err()
        .to_string()
        .contains("OPQ"));
    // Deterministic for a seed.
    let (again, _) = ProductQuantizer::fit(&x, &opq_params).unwrap();
    assert_eq!(again.hash().unwrap(), opq.hash().unwrap());
}

#[test]
fn faiss_index_files_are_read_or_refused_by_name() {
    let x = clustered(300, 16, 5);
    let (pq, _) = ProductQuantizer::fit(&x, &small()).unwrap();
    let bare = to_faiss_bytes(&pq).unwrap();
    // An IndexPQ as faiss.write_index lays it out: fourcc, index header (L2), the quantizer,
    // 2 vectors' codes, the search parameters.
    let code_size = (pq.num_subspaces() * pq.nbits() as usize).div_ceil(8);
    let index = |four: &[u8], metric: i32| {
        let mut b = four.to_vec();
        b.extend((pq.dim() as i32).to_le_bytes());
        b.extend(2i64.to_le_bytes());
        b.extend([(1i64 << 20).to_le_bytes(), (1i64 << 20).to_le_bytes()].concat());
        b.push(1);
        b.extend(metric.to_le_bytes());
        if metric > 1 {
            b.extend(1.5f32.to_le_bytes());
        }
        b.extend(&bare);
        b.extend((2 * code_size as u64).to_le_bytes());
        b.extend(vec![7u8; 2 * code_size]);
        if four != b"IxPQ" {
            b.extend([0u8; 9]);
        }
        b
    };
    for (four, metric) in [(b"IxPq", 1), (b"IxPQ", 0), (b"IxPo", 1), (b"IxPq", 3)] {
        let back = from_faiss_bytes(&index(four, metric), "idx").unwrap();
        assert!(back.centroids().equal(pq.centroids()));
    }
    let good = index(b"IxPq", 1);
    // No prefix of a valid file is read, none panics; neither does any byte flipped.
    for n in 0..good.len() {
        assert!(from_faiss_bytes(&good[..n], "idx").is_err(), "prefix {n}");
    }
    for i in 0..good.len().min(200) {
        let mut b = good.clone();
        b[i] ^= 0xff;
        let _ = from_faiss_bytes(&b, "idx");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(format!("{:#}", from_faiss_bytes(&long, "idx").unwrap_err()).contains("1 bytes after"));
    let err = |b: &[u8]| format!("{:#}", from_faiss_bytes(b, "f.index").unwrap_err());
    let mut ivf = good.clone();
    ivf[..4].copy_from_slice(b"IwPQ");
    let e = err(&ivf);
    assert!(
        e.contains("f.index: an IndexIVFPQ (faiss fourcc IwPQ)"),
        "{e}"
    );
    assert!(e.contains("write_ProductQuantizer(index.pq"), "{e}");
    ivf[..4].copy_from_slice(b"IxF2");
    assert!(err(&ivf).contains("an IndexFlatL2 (faiss fourcc IxF2)"));
    assert!(err(b"hello world\n").contains("f.index is a text file"));
    assert!(err(b"Zz9q\x00\x01\x02\xff").contains("unknown faiss object (fourcc \"Zz9q\")"));
    // A header whose sizes overflow is refused before any allocation.
    let mut huge = Vec::new();
    for v in [u64::MAX - 7, 8, 8, u64::MAX] {
        huge.extend(v.to_le_bytes());
    }
    assert!(err(&huge).contains("centroid values"));
}
