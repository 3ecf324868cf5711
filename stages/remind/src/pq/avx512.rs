//! The nearest-centroid search of `cpu.rs` with AVX-512 intrinsics: V sub-vectors against
//! 64 centroids at a time, the V x 64 dot products held in 4V registers, the argmin folded
//! in per block. The same float operations in the same order as the portable kernel
//! (`fma(x_j, c_j, acc)` over j, then `fma(-2, acc, |c|^2)`), so both give the same codes;
//! ties go to the lower centroid index.

use std::arch::x86_64::*;

/// Centroids per block: four 16-lane registers.
const BLOCK: usize = 64;

/// argmin over the `kp` centroids (`ct`: `[dsub][kp]`, `norms`: `[kp]`, `kp` a multiple of
/// 64) of `|c|^2 - 2 x.c` for each of the V sub-vectors in `x` (each `dsub` long).
#[target_feature(enable = "avx512f,fma")]
pub(super) fn nearest<const V: usize>(
    x: &[&[f32]; V],
    ct: &[f32],
    norms: &[f32],
    kp: usize,
    dsub: usize,
) -> [u32; V] {
    assert!(kp.is_multiple_of(BLOCK) && ct.len() >= dsub * kp && norms.len() >= kp);
    assert!(x.iter().all(|row| row.len() >= dsub));
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let minus2 = _mm512_set1_ps(-2.0);
    let mut best_d = [_mm512_set1_ps(f32::INFINITY); V];
    let mut best_i = [_mm512_setzero_si512(); V];
    for kc in (0..kp).step_by(BLOCK) {
        let mut acc = [[_mm512_setzero_ps(); 4]; V];
        for j in 0..dsub {
            let row = &ct[j * kp + kc..j * kp + kc + BLOCK];
            // SAFETY: `row` holds 64 floats, so each 16-float load at 16 r is in bounds.
            let c: [__m512; 4] =
                std::array::from_fn(|r| unsafe { _mm512_loadu_ps(row.as_ptr().add(16 * r)) });
            for v in 0..V {
                let xb = _mm512_set1_ps(x[v][j]);
                for r in 0..4 {
                    acc[v][r] = _mm512_fmadd_ps(xb, c[r], acc[v][r]);
                }
            }
        }
        let nrm = &norms[kc..kc + BLOCK];
        // SAFETY: as above, `nrm` holds 64 floats.
        let n: [__m512; 4] =
            std::array::from_fn(|r| unsafe { _mm512_loadu_ps(nrm.as_ptr().add(16 * r)) });
        let index = |r: usize| _mm512_add_epi32(lane, _mm512_set1_epi32((kc + 16 * r) as i32));
        for v in 0..V {
            let mut bd = _mm512_fmadd_ps(minus2, acc[v][0], n[0]);
            let mut bi = index(0);
            for r in 1..4 {
                let d = _mm512_fmadd_ps(minus2, acc[v][r], n[r]);
                // Strictly less: on ties the earlier (lower) index stays.
                let less = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, bd);
                bd = _mm512_mask_blend_ps(less, bd, d);
                bi = _mm512_mask_blend_epi32(less, bi, index(r));
            }
            let less = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(bd, best_d[v]);
            best_d[v] = _mm512_mask_blend_ps(less, best_d[v], bd);
            best_i[v] = _mm512_mask_blend_epi32(less, best_i[v], bi);
        }
    }
    std::array::from_fn(|v| {
        let (mut d, mut i) = ([0f32; 16], [0u32; 16]);
        // SAFETY: 16-lane stores into 16-element arrays.
        unsafe {
            _mm512_storeu_ps(d.as_mut_ptr(), best_d[v]);
            _mm512_storeu_si512(i.as_mut_ptr().cast(), best_i[v]);
        }
        let (mut bd, mut bi) = (f32::INFINITY, 0u32);
        for l in 0..16 {
            if d[l] < bd || (d[l] == bd && i[l] < bi) {
                bd = d[l];
                bi = i[l];
            }
        }
        bi
    })
}
