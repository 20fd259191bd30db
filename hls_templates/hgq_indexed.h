// hgq's own HLS C++ for indexed number types (hgq.quantizers.IndexedFormat), where hls4ml has no layer.
// encode: index = number of thresholds at or below the input (each element's thresholds ascend);
// decode: the element's level at that index. Both are exact: comparisons of ap_fixed values, and a
// table of exact ap_fixed constants. Registered with hls4ml by hgq/export/hls4ml_indexed.py.
#ifndef HGQ_INDEXED_H_
#define HGQ_INDEXED_H_

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void hgq_encode(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                const typename CONFIG_T::threshold_t thresholds[CONFIG_T::n_in * CONFIG_T::n_thresholds]) {
    #pragma HLS INLINE
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        unsigned count = 0;
        for (unsigned j = 0; j < CONFIG_T::n_thresholds; j++) {
            #pragma HLS UNROLL
            count += (data[i] >= thresholds[i * CONFIG_T::n_thresholds + j]) ? 1 : 0;
        }
        res[i] = count;
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void hgq_decode(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                const typename CONFIG_T::level_t levels[CONFIG_T::n_in * CONFIG_T::n_levels]) {
    #pragma HLS INLINE
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = levels[i * CONFIG_T::n_levels + data[i].to_uint()];
    }
}

} // namespace nnet

#endif
