// hgq's own HLS C++ for a per-sample step (hgq.quantizers.adaptive, ASQ), where hls4ml has no layer.
// scaled_encode: code = offset + #{j : x >= c_j * beta}, output code * 2^step_exponent (exact: products of
// exact ap_fixed constants with the sample's beta, comparisons, and a power of two);
// scale: x * beta for every element (beta: one value per sample). Registered by hgq/export/hls4ml_indexed.py.
#ifndef HGQ_ADAPTIVE_H_
#define HGQ_ADAPTIVE_H_

namespace nnet {

template <class data_T, class beta_T, class res_T, typename CONFIG_T>
void hgq_scaled_encode(data_T data[CONFIG_T::n_in], beta_T beta[1], res_T res[CONFIG_T::n_in],
                       const typename CONFIG_T::coefficient_t coefficients[CONFIG_T::n_thresholds]) {
    #pragma HLS INLINE
    ap_ufixed<1, 1 + CONFIG_T::step_exponent> step = 0;
    step[0] = 1;  // exactly 2^step_exponent
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        ap_int<CONFIG_T::code_bits> code = CONFIG_T::offset;
        for (unsigned j = 0; j < CONFIG_T::n_thresholds; j++) {
            #pragma HLS UNROLL
            code += (data[i] >= coefficients[j] * beta[0]) ? 1 : 0;
        }
        res[i] = code * step;
    }
}

template <class data_T, class beta_T, class res_T, typename CONFIG_T>
void hgq_scale(data_T data[CONFIG_T::n_in], beta_T beta[1], res_T res[CONFIG_T::n_in]) {
    #pragma HLS INLINE
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = data[i] * beta[0];
    }
}

} // namespace nnet

#endif
