/*
 * test_layers.c - the layers suite (src/nn): every layer's output against
 * PyTorch on a tiny case, the parameter registry's names and order,
 * initialiser statistics, train vs eval, gradients reaching every
 * parameter, a small MLP that learns, error messages naming the layer, and
 * no heap allocation in a steady-state forward + backward.
 *
 * Reference values come from tools/layers_reference.py (PyTorch, float64):
 * every tensor is filled with fill(t, s)[i] = 0.5 sin(0.37 i + s), the
 * input with s = 0 and the module's j-th parameter with s = j + 1, and the
 * printed arrays are pasted below. The torch code of each case is the
 * comment beside it.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* ====================================================================== */
/* Reference values (tools/layers_reference.py, fill(shape, s) as above)  */
/* ====================================================================== */

/* torch: nn.Linear(3, 2)(fill((2, 3), 0)) */
static const double ref_linear[4] = {0.70940081427720181, 0.45264140943147635, 1.1239295950620944,
                                     0.76283988201841058};
/* torch: nn.Conv2d(2, 2, 2, stride=2, padding=1)(fill((1, 2, 3, 3), 0)) */
static const double ref_conv2d[8] = {
    0.47494821861799785, 0.78556971739698378,  0.84827535777052043,  0.85672493388438586,
    0.33629333284317636, 0.061202152098921547, 0.019961599748591963, 0.06772038765339411};
/* torch: nn.Conv1d(2, 2, 3, padding=1)(fill((1, 2, 4), 0)) */
static const double ref_conv1d[8] = {
    0.76580878992334567,  1.1279410410081105,   1.2828648044836428,   1.0672993292634603,
    -0.19142753467137419, -0.47145312257131766, -0.43981226698869524, -0.07740272054615166};
/* torch: nn.MaxPool2d(2)(fill((1, 1, 4, 4), 0)) */
static const double ref_maxpool[4] = {0.49794042226882002, 0.44784934284002381,
                                      0.090298133947116457, -0.2649180704542467};
/* torch: nn.AvgPool2d(2, stride=1)(fill((1, 1, 3, 3), 0)) */
static const double ref_avgpool[4] = {0.28164937027283121, 0.37413242388825585, 0.40152366801763134,
                                      0.33272458213680611};
/* torch: nn.LayerNorm(4)(fill((2, 4), 0)) */
static const double ref_layernorm[8] = {
    -0.14769729998789369, 0.17246482407997177, 0.47509301308596436, 0.54088392110142991,
    0.85260005191451937,  0.72116795047847448, 0.13500183116395273, -0.66364220210239333};
/* torch: bn = nn.BatchNorm1d(3); bn(fill((4, 3), 0))  (training) */
static const double ref_bn1d_train[12] = {
    0.12199604734186528, 0.36964425733607836,   0.50477745759550008,  0.9139232110531148,
    0.93204939828158428, 0.71593853338450664,   0.82627511487146987,  0.51367048366847412,
    0.14152632508179094, -0.043599519615086554, -0.42080866276626133, -0.58047275826489331};
/* torch: bn.running_mean after that forward */
static const double ref_bn1d_rmean[3] = {0.018812118679665393, 0.016896305966017312,
                                         0.012693657504023254};
/* torch: bn.running_var after that forward */
static const double ref_bn1d_rvar[3] = {0.90754698902775677, 0.91017597447453191,
                                        0.91495491838627541};
/* torch: bn.eval(); bn(fill((4, 3), 0)) */
static const double ref_bn1d_eval[12] = {
    0.44634045670467393, 0.43281703359875084, 0.36261655626330525, 0.64413036916789712,
    0.59568335941170059, 0.43655216607332092, 0.62223958164888649, 0.47452544021826731,
    0.23542837114809115, 0.40498168762391579, 0.20391058617767496, -0.017371262070525983};
/* torch: nn.BatchNorm2d(2)(fill((2, 2, 2, 2), 0))  (training) */
static const double ref_bn2d_train[16] = {
    0.39676537956235902,  0.67848115012248722,  0.92206801272572492,   1.0945576282363536,
    0.93014036276733703,  0.91053075321808408,  0.81719644808924885,   0.6627698077290004,
    0.53745853663712895,  0.25085385091138768,  -0.016002393913368804, -0.226992456979346,
    -0.17995193080021549, -0.19814673573438099, -0.1400119391596292,   -0.01341581306969363};
/* torch: its running_var after that forward */
static const double ref_bn2d_rvar[2] = {0.9083322498343116, 0.9213587240712201};
/* torch: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))(fill((2, 3), 0)) */
static const double ref_seq[4] = {-0.38893713662311341, -1.054823605124483, -0.38546036147493512,
                                  -1.3956504546511503};
/* torch: r = nn.RNN(3, 4, num_layers=2, batch_first=True); out, h = r(fill((2, 3, 3), 0)): out */
static const double ref_rnn_out[24] = {
    0.85789588684906393, 0.065467519879064781, 0.20085601613593754,   0.87164992260868879,
    0.77727326091467264, 0.83557963746481767,  0.57661231610996833,   0.27420764327616404,
    0.80125715279569709, 0.87424286229070314,  0.55105854667486776,   0.12942343811685358,
    0.91109423064466344, 0.20871177811033137,  -0.018456895217996212, 0.81886772850484113,
    0.91057393427414801, 0.86635230891660209,  0.18315058336916493,   0.083671508047606938,
    0.88652819617587963, 0.84920389340411073,  0.29027042732343938,   0.16784468279454345};
/* torch: its final hidden state h_n [2, 2, 4] */
static const double ref_rnn_hn[16] = {
    0.13735033187009246,  0.19444778415303804,  -0.71567596349588181, -0.94137397646267185,
    -0.76010135548803093, -0.31255312290826603, -0.18339280681672981, -0.75739245483664441,
    0.80125715279569709,  0.87424286229070314,  0.55105854667486776,  0.12942343811685358,
    0.88652819617587963,  0.84920389340411073,  0.29027042732343938,  0.16784468279454345};
/* torch: (out * fill(out.shape, 9)).sum().backward(); r.bias_hh_l1.grad */
static const double ref_rnn_gbhh1[4] = {-0.16350493100474042, 0.37079395040287022,
                                        -0.099926025114807082, -0.55532412679041865};
/* torch: r = nn.LSTM(3, 4, num_layers=2, batch_first=True); out, h = r(fill((2, 3, 3), 0)): out */
static const double ref_lstm_out[24] = {
    -0.15407941290348628, -0.2028211280976944,  -0.23209741779494567, -0.23266502879876241,
    -0.2471422014767273,  -0.25060972695582018, -0.28749227986157111, -0.30012630996277667,
    -0.27540776030055147, -0.25705456946581384, -0.31856329673563921, -0.31351826133054173,
    -0.14922835642003893, -0.20139098355208418, -0.22247915847513369, -0.22725545748825346,
    -0.226401208591478,   -0.23756504220711974, -0.30585285232016074, -0.27553825634848528,
    -0.2573499164099663,  -0.24485094826676726, -0.33959364828027189, -0.27220301555688475};
/* torch: its final hidden state h_n [2, 2, 4] */
static const double ref_lstm_hn[16] = {
    -0.05636546894491954, -0.0090161176941616784, 0.14136813410848523,  0.17046748820520433,
    0.21766253531950586,  0.15105357280853515,    0.1172103631608381,   0.18505304021640137,
    -0.27540776030055147, -0.25705456946581384,   -0.31856329673563921, -0.31351826133054173,
    -0.2573499164099663,  -0.24485094826676726,   -0.33959364828027189, -0.27220301555688475};
/* torch: its final cell state c_n [2, 2, 4] */
static const double ref_lstm_cn[16] = {
    -0.072792972107339565, -0.013324120064494058, 0.25870322164428822,  0.33994583801409983,
    0.31484117374897225,   0.22164953530849768,   0.1883064533012285,   0.31546615258499955,
    -0.76518375034034625,  -0.83872239368108181,  -0.8637184741406192,  -0.52024744599586958,
    -0.8076677385182115,   -0.88982002768974322,  -0.84269968294699726, -0.41601313676722007};
/* torch: (out * fill(out.shape, 9)).sum().backward(); r.bias_hh_l1.grad */
static const double ref_lstm_gbhh1[16] = {
    0.015227269247715954,  0.020666322891244593, 0.025747911231849767,  0.039013424596680078,
    0.03635372116068511,   0.031722357407018363, 0.036499689193651756,  0.045479255201287594,
    -0.090695718181899976, 0.012354903264720468, -0.018355124245422516, -0.30028820269478407,
    0.039253191869611986,  0.059816192860083675, 0.096066177587526169,  0.050721690020360172};
/* torch: r = nn.GRU(3, 4, num_layers=2, batch_first=True); out, h = r(fill((2, 3, 3), 0)): out */
static const double ref_gru_out[24] = {
    -0.27011783350580015, -0.23111552696642512, -0.27611637233539815, -0.43318881963961764,
    -0.33668932096518028, -0.44936210847528824, -0.53132556612913362, -0.50006575369517381,
    -0.37397065932305135, -0.59003140299486323, -0.65020713120622975, -0.45192920381475488,
    -0.36985077649524467, -0.29032643920404072, -0.16799062493106717, -0.32813302757054691,
    -0.57734484477884296, -0.5824797657834242,  -0.28662119400635505, -0.26252395540288809,
    -0.6381233583778626,  -0.71848984453607723, -0.42452344034366835, -0.20464019115685733};
/* torch: its final hidden state h_n [2, 2, 4] */
static const double ref_gru_hn[16] = {
    -0.26811187099659012, -0.27693417749804328, 0.23669896551767453,  0.60003054725979998,
    0.37220587897144075,  0.41385392511517255,  0.26300981388260219,  0.2035378091232817,
    -0.37397065932305135, -0.59003140299486323, -0.65020713120622975, -0.45192920381475488,
    -0.6381233583778626,  -0.71848984453607723, -0.42452344034366835, -0.20464019115685733};
/* torch: (out * fill(out.shape, 9)).sum().backward(); r.bias_hh_l1.grad */
static const double ref_gru_gbhh1[12] = {
    0.0075845885830364244, 0.07137546000659821,  0.053747372696432802, -0.012884542615976352,
    0.030940524062805935,  -0.02954533934902099, -0.10457098171167119, -0.018151001878824312,
    -0.18133741847190993,  -0.15101665977598644, -0.25313440598079939, -0.3432733450162283};
/* torch: nn.MultiheadAttention(4, 2, batch_first=True) with in_proj = cat(q, k, v) weights, causal
 * attn_mask = triu(ones(3, 3), 1), self-attention on fill((2, 3, 4), 0) */
static const double ref_mha[24] = {
    0.83195393526172223, 0.46754016268694937, -0.015104372425558121, 0.06206888408649093,
    0.88067221744747859, 0.42474829098290356, -0.071582671653862728, 0.094618797514513311,
    0.80988885652458897, 0.38420432525859466, -0.008151685199869918, 0.1466655444051366,
    0.57520484391857551, 0.37134722750578353, 0.22420077952785578,   0.20165819300824581,
    0.66024193581674184, 0.42362691246670336, 0.1486442555534673,    0.13567684251205725,
    0.71886311542618953, 0.42643774404164897, 0.090532801274011532,  0.12232789101810826};
/* torch: (y * fill(y.shape, 9)).sum().backward(); in_proj_weight.grad[:4] (q_proj.weight) */
static const double ref_mha_gqw[16] = {
    -0.00027193500935030103, -0.0024369049509360657, -0.0042720512394505503, -0.0055289954338037378,
    -0.0020809913353005858,  -0.0049570776848674196, -0.0071622468244901113, -0.0083980394560368102,
    -0.00014494917964746171, 0.0007187942595995976,  0.0014852522678261574,  0.002050688349235811,
    0.0025269911414385273,   0.006359702044759977,   0.0093316571110341508,  0.011040616164112315};

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

/* t[i] = 0.5 sin(0.37 i + s), row-major, f32 or f64. */
static void fill(tg_tensor *t, double s)
{
    int64_t n = tg_numel(t);
    tg_dtype dt = tg_tensor_dtype(t);
    size_t es = tg_dtype_size(dt);
    void *buf = malloc((size_t)n * es + 1);
    ck_assert_ptr_nonnull(buf);
    for (int64_t i = 0; i < n; i++) {
        double v = 0.5 * sin(0.37 * (double)i + s);
        if (dt == TG_F32) ((float *)buf)[i] = (float)v;
        else ((double *)buf)[i] = v;
    }
    ck_assert_int_eq(tg_copy_in(t, buf, (size_t)n * es), TG_OK);
    free(buf);
}

/* A filled input of the given shape in c. */
static tg_tensor *input(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, double s)
{
    tg_tensor *t = tg_tensor_new(c, dt, ndim, shape);
    ck_assert_ptr_nonnull(t);
    fill(t, s);
    return t;
}

/* Fills the parameters registered from index first on, the j-th with j + 1. */
static void fill_params_from(tg_model *m, int first)
{
    for (int i = first; i < tg_model_nparams(m); i++) fill(tg_model_param(m, i), i - first + 1);
}

/* Checks t's values against ref[0..n-1]. */
static void check_ref(const tg_tensor *t, const double *ref, int64_t n, double tol)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_numel(t), n);
    double *buf = malloc((size_t)n * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    if (tg_tensor_dtype(t) == TG_F64) {
        ck_assert_int_eq(tg_copy_out(t, buf, (size_t)n * sizeof *buf), TG_OK);
    } else {
        float *f = malloc((size_t)n * sizeof *f);
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(tg_copy_out(t, f, (size_t)n * sizeof *f), TG_OK);
        for (int64_t i = 0; i < n; i++) buf[i] = f[i];
        free(f);
    }
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(buf[i] - ref[i]) <= tol, "element %lld: %.17g, expected %.17g",
                      (long long)i, buf[i], ref[i]);
    free(buf);
}
#define CHECK_REF(t, ref, tol) \
    check_ref((t), (ref), (int64_t)(sizeof(ref) / sizeof((ref)[0])), (tol))

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), ndim);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(tg_shape(t)[i], shape[i]);
}
#define ASSERT_SHAPE(t, ...) assert_shape((t), TG_SHAPE(__VA_ARGS__))

/* A persistent context with an F64 model, and a step context. */
typedef struct {
    tg_ctx *pc, *c;
    tg_model *m;
} fixture;

static fixture fx_new(tg_dtype dt)
{
    fixture f = {tu_ctx(), tu_ctx(), NULL};
    f.m = tg_model_new(f.pc);
    ck_assert_ptr_nonnull(f.m);
    ck_assert_int_eq(tg_model_set_dtype(f.m, dt), TG_OK);
    return f;
}

static void fx_free(fixture *f)
{
    tg_ctx_free(f->c);
    tg_ctx_free(f->pc);
}

#define TOL 1e-12

/* ====================================================================== */
/* Layers against PyTorch                                                  */
/* ====================================================================== */

START_TEST(test_linear)
{
    fixture f = fx_new(TG_F64);
    tg_module *l = tg_nn_linear_new(f.m, "fc", 3, 2, true);
    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(tg_module_kind(l), "linear");
    ck_assert_str_eq(tg_module_name(l), "fc");
    ASSERT_SHAPE(tg_module_get(l, "weight"), 2, 3);
    ASSERT_SHAPE(tg_module_get(l, "bias"), 2);
    fill_params_from(f.m, 0);
    tg_tensor *y = tg_module_forward(f.c, l, input(f.c, TG_F64, TG_SHAPE(2, 3), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 2);
    CHECK_REF(y, ref_linear, TOL);
    /* no bias: one parameter */
    tg_module *nb = tg_nn_linear_new(f.m, "nb", 3, 2, false);
    ck_assert_ptr_nonnull(nb);
    ck_assert_ptr_null(tg_module_get(nb, "bias"));
    ck_assert_int_eq(tg_model_nparams(f.m), 3);
    /* batched leading dims */
    y = tg_module_forward(f.c, l, input(f.c, TG_F64, TG_SHAPE(4, 5, 3), 0));
    ASSERT_SHAPE(y, 4, 5, 2);
    fx_free(&f);
}
END_TEST

START_TEST(test_conv)
{
    fixture f = fx_new(TG_F64);
    tg_conv2d_opts o = tg_conv2d_defaults();
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    tg_module *cv = tg_nn_conv2d_new(f.m, "conv", 2, 2, 2, 2, &o, true);
    ck_assert_ptr_nonnull(cv);
    ASSERT_SHAPE(tg_module_get(cv, "weight"), 2, 2, 2, 2);
    fill_params_from(f.m, 0);
    tg_tensor *y = tg_module_forward(f.c, cv, input(f.c, TG_F64, TG_SHAPE(1, 2, 3, 3), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 1, 2, 2, 2);
    CHECK_REF(y, ref_conv2d, TOL);

    int first = tg_model_nparams(f.m);
    tg_conv1d_opts o1 = tg_conv1d_defaults();
    o1.padding = 1;
    tg_module *c1 = tg_nn_conv1d_new(f.m, "conv1", 2, 2, 3, &o1, true);
    ck_assert_ptr_nonnull(c1);
    ASSERT_SHAPE(tg_module_get(c1, "weight"), 2, 2, 3);
    fill_params_from(f.m, first);
    y = tg_module_forward(f.c, c1, input(f.c, TG_F64, TG_SHAPE(1, 2, 4), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 1, 2, 4);
    CHECK_REF(y, ref_conv1d, TOL);

    /* grouped conv weight shape */
    o = tg_conv2d_defaults();
    o.groups = 2;
    tg_module *g = tg_nn_conv2d_new(f.m, "grouped", 4, 6, 3, 1, &o, false);
    ASSERT_SHAPE(tg_module_get(g, "weight"), 6, 2, 3, 1);
    fx_free(&f);
}
END_TEST

START_TEST(test_pool)
{
    fixture f = fx_new(TG_F64);
    tg_pool2d_opts o = tg_pool2d_defaults();
    o.kernel[0] = o.kernel[1] = 2;
    tg_module *mp = tg_nn_max_pool2d_new(f.m, "pool", &o);
    o.stride[0] = o.stride[1] = 1;
    tg_module *ap = tg_nn_avg_pool2d_new(f.m, "avg", &o);
    ck_assert_ptr_nonnull(mp);
    ck_assert_ptr_nonnull(ap);
    tg_tensor *y = tg_module_forward(f.c, mp, input(f.c, TG_F64, TG_SHAPE(1, 1, 4, 4), 0));
    ASSERT_SHAPE(y, 1, 1, 2, 2);
    CHECK_REF(y, ref_maxpool, TOL);
    y = tg_module_forward(f.c, ap, input(f.c, TG_F64, TG_SHAPE(1, 1, 3, 3), 0));
    ASSERT_SHAPE(y, 1, 1, 2, 2);
    CHECK_REF(y, ref_avgpool, TOL);
    ck_assert_int_eq(tg_model_nparams(f.m), 0);
    fx_free(&f);
}
END_TEST

START_TEST(test_embedding)
{
    fixture f = fx_new(TG_F64);
    tg_module *e = tg_nn_embedding_new(f.m, "emb", 5, 3);
    ck_assert_ptr_nonnull(e);
    tg_tensor *w = tg_module_get(e, "weight");
    ASSERT_SHAPE(w, 5, 3);
    tg_tensor *idx = tg_tensor_from(f.c, TG_I64, TG_SHAPE(2, 2), (const int64_t[]){0, 4, 2, 2});
    tg_tensor *y = tg_module_forward(f.c, e, idx);
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 2, 3);
    const int64_t rows[4] = {0, 4, 2, 2};
    for (int p = 0; p < 4; p++)
        for (int d = 0; d < 3; d++)
            ck_assert_double_eq(tg_get(y, (const int64_t[]){p / 2, p % 2, d}),
                                tg_get(w, (const int64_t[]){rows[p], d}));
    fx_free(&f);
}
END_TEST

START_TEST(test_layer_norm)
{
    fixture f = fx_new(TG_F64);
    tg_module *ln = tg_nn_layer_norm_new(f.m, "ln", TG_SHAPE(4), 1e-5, true);
    ck_assert_ptr_nonnull(ln);
    tu_assert_values(tg_module_get(ln, "weight"), 0, 1, 1, 1, 1);
    tu_assert_values(tg_module_get(ln, "bias"), 0, 0, 0, 0, 0);
    fill_params_from(f.m, 0);
    tg_tensor *y = tg_module_forward(f.c, ln, input(f.c, TG_F64, TG_SHAPE(2, 4), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 4);
    CHECK_REF(y, ref_layernorm, 1e-10);
    fx_free(&f);
}
END_TEST

START_TEST(test_batch_norm)
{
    fixture f = fx_new(TG_F64);
    tg_module *bn = tg_nn_batch_norm1d_new(f.m, "bn", 3, 1e-5, 0.1, true);
    ck_assert_ptr_nonnull(bn);
    tg_tensor *rm = tg_module_get(bn, "running_mean"), *rv = tg_module_get(bn, "running_var");
    tg_tensor *nbt = tg_module_get(bn, "num_batches_tracked");
    tu_assert_values(rm, 0, 0, 0, 0);
    tu_assert_values(rv, 0, 1, 1, 1);
    ck_assert_int_eq(tg_tensor_dtype(nbt), TG_I64);
    ck_assert_int_eq(tg_ndim(nbt), 0);
    ck_assert(!tg_requires_grad(rm));
    fill_params_from(f.m, 0);
    tg_tensor *x = input(f.c, TG_F64, TG_SHAPE(4, 3), 0);
    tg_tensor *y = tg_module_forward(f.c, bn, x);
    tu_assert_ok(f.c);
    CHECK_REF(y, ref_bn1d_train, 1e-10);
    CHECK_REF(rm, ref_bn1d_rmean, 1e-12);
    CHECK_REF(rv, ref_bn1d_rvar, 1e-12);
    ck_assert_double_eq(tg_item(nbt), 1);

    /* eval: running statistics, which stay as they are */
    ck_assert(tg_model_set_training(f.m, false));
    y = tg_module_forward(f.c, bn, x);
    tu_assert_ok(f.c);
    CHECK_REF(y, ref_bn1d_eval, 1e-10);
    CHECK_REF(rm, ref_bn1d_rmean, 1e-12);
    ck_assert_double_eq(tg_item(nbt), 1);
    /* eval also works on a batch of one */
    y = tg_module_forward(f.c, bn, input(f.c, TG_F64, TG_SHAPE(1, 3), 0));
    tu_assert_ok(f.c);
    tg_model_set_training(f.m, true);

    /* 3-d input to BatchNorm1d */
    y = tg_module_forward(f.c, bn, input(f.c, TG_F64, TG_SHAPE(2, 3, 5), 0));
    ASSERT_SHAPE(y, 2, 3, 5);
    ck_assert_double_eq(tg_item(nbt), 2);

    int first = tg_model_nparams(f.m);
    tg_module *bn2 = tg_nn_batch_norm2d_new(f.m, "bn2", 2, 1e-5, 0.1, true);
    ck_assert_ptr_nonnull(bn2);
    fill_params_from(f.m, first);
    y = tg_module_forward(f.c, bn2, input(f.c, TG_F64, TG_SHAPE(2, 2, 2, 2), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 2, 2, 2);
    CHECK_REF(y, ref_bn2d_train, 1e-10);
    CHECK_REF(tg_module_get(bn2, "running_var"), ref_bn2d_rvar, 1e-12);

    /* no affine: buffers only */
    tg_module *na = tg_nn_batch_norm2d_new(f.m, "plain", 2, 1e-5, 0.1, false);
    ck_assert_ptr_nonnull(na);
    ck_assert_ptr_null(tg_module_get(na, "weight"));
    ck_assert_ptr_nonnull(tg_module_get(na, "running_mean"));
    fx_free(&f);
}
END_TEST

START_TEST(test_sequential)
{
    fixture f = fx_new(TG_F64);
    tg_module *seq = tg_nn_sequential_new(f.m, "net");
    ck_assert_ptr_nonnull(seq);
    ck_assert_int_eq(tg_nn_sequential_add(
                         seq, tg_nn_linear_new(f.m, tg_model_name(f.m, "net.%d", 0), 3, 4, true)),
                     TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(seq, tg_nn_relu_new(f.m)), TG_OK);
    ck_assert_int_eq(tg_nn_sequential_add(
                         seq, tg_nn_linear_new(f.m, tg_model_name(f.m, "net.%d", 2), 4, 2, true)),
                     TG_OK);
    ck_assert_int_eq(tg_nn_sequential_len(seq), 3);
    ck_assert_str_eq(tg_module_kind(tg_nn_sequential_child(seq, 1)), "relu");
    ck_assert_ptr_null(tg_nn_sequential_child(seq, 3));
    ck_assert_str_eq(tg_tensor_name(tg_model_param(f.m, 2)), "net.2.weight");
    fill_params_from(f.m, 0);
    tg_tensor *y = tg_module_forward(f.c, seq, input(f.c, TG_F64, TG_SHAPE(2, 3), 0));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 2);
    CHECK_REF(y, ref_seq, TOL);

    /* activations and shape layers */
    tg_tensor *x = input(f.c, TG_F64, TG_SHAPE(2, 3, 2), 0);
    ASSERT_SHAPE(tg_module_forward(f.c, tg_nn_flatten_new(f.m, 1, -1), x), 2, 6);
    ck_assert_ptr_eq(tg_module_forward(f.c, tg_nn_identity_new(f.m), x), x);
    tg_tensor *t = tg_module_forward(f.c, tg_nn_tanh_new(f.m), x);
    ck_assert_double_eq_tol(tg_get(t, (const int64_t[]){1, 2, 1}),
                            tanh(tg_get(x, (const int64_t[]){1, 2, 1})), 1e-15);
    t = tg_module_forward(f.c, tg_nn_sigmoid_new(f.m), x);
    ck_assert_double_eq_tol(tg_get(t, (const int64_t[]){0, 1, 1}),
                            1 / (1 + exp(-tg_get(x, (const int64_t[]){0, 1, 1}))), 1e-15);
    t = tg_module_forward(f.c, tg_nn_gelu_new(f.m), x);
    double v = tg_get(x, (const int64_t[]){1, 0, 0});
    ck_assert_double_eq_tol(tg_get(t, (const int64_t[]){1, 0, 0}), 0.5 * v * erfc(-v / sqrt(2)),
                            1e-15);
    t = tg_module_forward(f.c, tg_nn_leaky_relu_new(f.m, 0.1), x);
    v = tg_get(x, (const int64_t[]){1, 2, 1});
    ck_assert_double_eq_tol(tg_get(t, (const int64_t[]){1, 2, 1}), v > 0 ? v : 0.1 * v, 1e-15);
    t = tg_module_forward(f.c, tg_nn_silu_new(f.m), x);
    ck_assert_ptr_nonnull(t);
    t = tg_module_forward(f.c, tg_nn_softmax_new(f.m, -1), x);
    ck_assert_double_eq_tol(
        tg_get(t, (const int64_t[]){0, 0, 0}) + tg_get(t, (const int64_t[]){0, 0, 1}), 1, 1e-15);
    tu_assert_ok(f.c);
    fx_free(&f);
}
END_TEST

/* Runs a 2-layer recurrent module on the reference input and checks outputs,
 * states and the gradient of bias_hh_l1. */
static void check_recurrent(tg_module *(*make)(tg_model *, const char *, int64_t, int64_t,
                                               const tg_rnn_opts *),
                            const char *kind, bool lstm, const double *out, const double *hn,
                            const double *cn, const double *gb, int gates)
{
    fixture f = fx_new(TG_F64);
    tg_rnn_opts o = tg_rnn_defaults();
    o.num_layers = 2;
    tg_module *r = make(f.m, "rnn", 3, 4, &o);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(tg_module_kind(r), kind);
    ck_assert_int_eq(tg_model_nparams(f.m), 8);
    ASSERT_SHAPE(tg_module_get(r, "weight_ih_l0"), gates * 4, 3);
    ASSERT_SHAPE(tg_module_get(r, "weight_ih_l1"), gates * 4, 4);
    ASSERT_SHAPE(tg_module_get(r, "weight_hh_l1"), gates * 4, 4);
    fill_params_from(f.m, 0);
    tg_tensor *x = input(f.c, TG_F64, TG_SHAPE(2, 3, 3), 0);
    tg_tensor *y = NULL, *h = NULL, *cs = NULL;
    ck_assert_ptr_nonnull(tg_nn_rnn_forward(f.c, r, x, NULL, NULL, &y, &h, &cs));
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 3, 4);
    ASSERT_SHAPE(h, 2, 2, 4);
    check_ref(y, out, 24, 1e-12);
    check_ref(h, hn, 16, 1e-12);
    if (lstm) {
        ASSERT_SHAPE(cs, 2, 2, 4);
        check_ref(cs, cn, 16, 1e-12);
    } else {
        ck_assert_ptr_null(cs);
    }
    tg_tensor *wsum = input(f.c, TG_F64, TG_SHAPE(2, 3, 4), 9);
    ck_assert_int_eq(tg_backward(f.c, tg_sum(f.c, tg_mul(f.c, y, wsum))), TG_OK);
    check_ref(tg_grad(tg_module_get(r, "bias_hh_l1")), gb, 4 * gates, 1e-12);

    /* tg_module_forward gives the same output sequence */
    tg_tensor *y2 = tg_module_forward(f.c, r, x);
    ck_assert_ptr_nonnull(y2);
    check_ref(y2, out, 24, 1e-12);

    /* explicit zero states give the same result; batch_first off is the
     * same computation on the transposed input */
    tg_tensor *h0 = tg_tensor_new(f.c, TG_F64, TG_SHAPE(2, 2, 4));
    tg_nn_rnn_forward(f.c, r, x, h0, lstm ? h0 : NULL, &y2, NULL, NULL);
    check_ref(y2, out, 24, 1e-12);
    o.batch_first = false;
    int first = tg_model_nparams(f.m);
    tg_module *tf = make(f.m, "tf", 3, 4, &o);
    ck_assert_ptr_nonnull(tf);
    fill_params_from(f.m, first);
    tg_tensor *xt = tg_contiguous(f.c, tg_transpose(f.c, x, 0, 1));
    tg_nn_rnn_forward(f.c, tf, xt, NULL, NULL, &y2, &h, NULL);
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y2, 3, 2, 4);
    check_ref(tg_transpose(f.c, y2, 0, 1), out, 24, 1e-12);
    check_ref(h, hn, 16, 1e-12);
    fx_free(&f);
}

START_TEST(test_rnn)
{
    check_recurrent(tg_nn_rnn_new, "rnn", false, ref_rnn_out, ref_rnn_hn, NULL, ref_rnn_gbhh1, 1);
}
END_TEST

START_TEST(test_lstm)
{
    check_recurrent(tg_nn_lstm_new, "lstm", true, ref_lstm_out, ref_lstm_hn, ref_lstm_cn,
                    ref_lstm_gbhh1, 4);
}
END_TEST

START_TEST(test_gru)
{
    check_recurrent(tg_nn_gru_new, "gru", false, ref_gru_out, ref_gru_hn, NULL, ref_gru_gbhh1, 3);
}
END_TEST

START_TEST(test_attention)
{
    fixture f = fx_new(TG_F64);
    tg_module *a = tg_nn_mha_new(f.m, "attn", 4, 2, true, true);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(tg_model_nparams(f.m), 8);
    ASSERT_SHAPE(tg_module_get(a, "q_proj.weight"), 4, 4);
    ASSERT_SHAPE(tg_module_get(a, "out_proj.bias"), 4);
    fill_params_from(f.m, 0);
    tg_tensor *x = input(f.c, TG_F64, TG_SHAPE(2, 3, 4), 0);
    tg_tensor *y = tg_nn_mha_forward(f.c, a, x, x, x, NULL);
    tu_assert_ok(f.c);
    ASSERT_SHAPE(y, 2, 3, 4);
    CHECK_REF(y, ref_mha, 1e-12);
    tg_tensor *wsum = input(f.c, TG_F64, TG_SHAPE(2, 3, 4), 9);
    ck_assert_int_eq(tg_backward(f.c, tg_sum(f.c, tg_mul(f.c, y, wsum))), TG_OK);
    CHECK_REF(tg_grad(tg_module_get(a, "q_proj.weight")), ref_mha_gqw, 1e-12);
    /* self-attention through tg_module_forward */
    CHECK_REF(tg_module_forward(f.c, a, x), ref_mha, 1e-12);
    /* cross-attention with another key length */
    tg_tensor *kv = input(f.c, TG_F64, TG_SHAPE(2, 5, 4), 3);
    tg_module *cross = tg_nn_mha_new(f.m, "cross", 4, 4, false, false);
    ck_assert_ptr_nonnull(cross);
    ck_assert_ptr_null(tg_module_get(cross, "q_proj.bias"));
    ASSERT_SHAPE(tg_nn_mha_forward(f.c, cross, x, kv, kv, NULL), 2, 3, 4);
    tu_assert_ok(f.c);
    fx_free(&f);
}
END_TEST

/* ====================================================================== */
/* The registry                                                           */
/* ====================================================================== */

START_TEST(test_registry)
{
    fixture f = fx_new(TG_F32);
    ck_assert(tg_model_training(f.m));
    ck_assert_ptr_eq(tg_model_ctx(f.m), f.pc);
    ck_assert_ptr_null(tg_model_params(f.m));
    tg_nn_linear_new(f.m, "fc1", 4, 3, true);
    tg_nn_batch_norm1d_new(f.m, "bn", 3, 1e-5, 0.1, true);
    tg_rnn_opts o = tg_rnn_defaults();
    o.num_layers = 2;
    tg_nn_lstm_new(f.m, "lstm", 3, 2, &o);
    tg_nn_mha_new(f.m, tg_model_name(f.m, "layers.%d.attn", 0), 4, 2, true, false);
    tu_assert_ok(f.pc);
    static const char *const want[] = {"fc1.weight",
                                       "fc1.bias",
                                       "bn.weight",
                                       "bn.bias",
                                       "lstm.weight_ih_l0",
                                       "lstm.weight_hh_l0",
                                       "lstm.bias_ih_l0",
                                       "lstm.bias_hh_l0",
                                       "lstm.weight_ih_l1",
                                       "lstm.weight_hh_l1",
                                       "lstm.bias_ih_l1",
                                       "lstm.bias_hh_l1",
                                       "layers.0.attn.q_proj.weight",
                                       "layers.0.attn.q_proj.bias",
                                       "layers.0.attn.k_proj.weight",
                                       "layers.0.attn.k_proj.bias",
                                       "layers.0.attn.v_proj.weight",
                                       "layers.0.attn.v_proj.bias",
                                       "layers.0.attn.out_proj.weight",
                                       "layers.0.attn.out_proj.bias"};
    int n = (int)(sizeof want / sizeof want[0]);
    ck_assert_int_eq(tg_model_nparams(f.m), n);
    tg_tensor *const *ps = tg_model_params(f.m);
    int64_t numel = 0;
    for (int i = 0; i < n; i++) {
        tg_tensor *p = tg_model_param(f.m, i);
        ck_assert_ptr_eq(ps[i], p);
        ck_assert_str_eq(tg_tensor_name(p), want[i]);
        ck_assert(tg_requires_grad(p));
        ck_assert(tg_is_leaf(p));
        ck_assert_ptr_eq(tg_tensor_ctx(p), f.pc);
        ck_assert_int_eq(tg_tensor_dtype(p), TG_F32);
        ck_assert_ptr_eq(tg_model_find(f.m, want[i]), p);
        numel += tg_numel(p);
    }
    ck_assert_ptr_null(tg_model_param(f.m, n));
    ck_assert_ptr_null(tg_model_param(f.m, -1));
    ck_assert_int_eq(tg_model_numel(f.m), numel);
    ck_assert_int_eq(numel,
                     4 * 3 + 3 + 3 + 3 + (8 * 3 + 8 * 2 + 16) + (8 * 2 + 8 * 2 + 16) + 4 * 20);

    static const char *const bufs[] = {"bn.running_mean", "bn.running_var",
                                       "bn.num_batches_tracked"};
    ck_assert_int_eq(tg_model_nbuffers(f.m), 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(tg_tensor_name(tg_model_buffer(f.m, i)), bufs[i]);
        ck_assert_ptr_eq(tg_model_buffers(f.m)[i], tg_model_buffer(f.m, i));
        ck_assert(!tg_requires_grad(tg_model_buffer(f.m, i)));
        ck_assert_ptr_eq(tg_model_find(f.m, bufs[i]), tg_model_buffer(f.m, i));
    }
    ck_assert_ptr_null(tg_model_find(f.m, "fc2.weight"));

    /* a user tensor as a parameter and a buffer */
    tg_tensor *scale = tg_tensor_new(f.pc, TG_F32, TG_SHAPE(3));
    ck_assert_int_eq(tg_model_add_param(f.m, "scale", scale), TG_OK);
    ck_assert(tg_requires_grad(scale));
    ck_assert_ptr_eq(tg_model_param(f.m, n), scale);
    ck_assert_int_eq(tg_model_add_buffer(f.m, "steps", tg_tensor_new(f.pc, TG_I64, 0, NULL)),
                     TG_OK);
    ck_assert_int_eq(tg_model_nbuffers(f.m), 4);

    /* duplicate names are refused, naming the name */
    ck_assert_ptr_null(tg_nn_linear_new(f.m, "fc1", 2, 2, true));
    ck_assert_int_eq(tg_ctx_status(f.pc), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(f.pc), "'fc1.weight' is already registered"));
    tg_ctx_clear_error(f.pc);
    /* and a tensor of another context */
    ck_assert_int_eq(tg_model_add_param(f.m, "x", tg_tensor_new(f.c, TG_F32, TG_SHAPE(2))),
                     TG_ERR_INVALID);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_model_add_param(f.m, "i", tg_tensor_new(f.pc, TG_I64, TG_SHAPE(2))),
                     TG_ERR_DTYPE);
    tg_ctx_clear_error(f.pc);

    /* the names reach the optimizer and checkpoints unchanged: the
     * registry's arrays are what tg_sgd_new and tg_safetensors_write take */
    ck_assert_int_eq(tg_model_set_dtype(f.m, TG_I64), TG_ERR_DTYPE);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_model_dtype(f.m), TG_F32);
    ck_assert(tg_model_set_training(f.m, false));
    ck_assert(!tg_model_training(f.m));
    fx_free(&f);
}
END_TEST

/* Loading by name: a model made from another seed becomes the first one. */
static tg_model *load_model(tg_ctx *pc, tg_module **bn)
{
    tg_model *m = tg_model_new(pc);
    tg_nn_linear_new(m, "fc", 3, 2, true);
    *bn = tg_nn_batch_norm1d_new(m, "bn", 2, 1e-5, 0.1, true);
    return m;
}

START_TEST(test_model_load)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.seed = 1;
    tg_ctx *pa = tg_ctx_new_opts(&o);
    o.seed = 2;
    tg_ctx *pb = tg_ctx_new_opts(&o);
    tg_ctx *c = tu_ctx();
    tg_module *bn_a, *bn_b;
    tg_model *a = load_model(pa, &bn_a), *b = load_model(pb, &bn_b);
    tu_assert_ok(pa);
    tu_assert_ok(pb);
    /* a forward in training mode moves a's running statistics */
    ck_assert_ptr_nonnull(tg_module_forward(c, bn_a, input(c, TG_F32, TG_SHAPE(4, 2), 0)));
    ck_assert_double_eq(tg_item(tg_module_get(bn_a, "num_batches_tracked")), 1);

    /* a state: a's parameters and buffers, as tensors of another context */
    int np = tg_model_nparams(a), nb = tg_model_nbuffers(a), n = np + nb;
    tg_tensor *state[8];
    const char *names[8];
    for (int i = 0; i < n; i++) {
        tg_tensor *t = i < np ? tg_model_param(a, i) : tg_model_buffer(a, i - np);
        state[i] = tg_contiguous(c, t);
        names[i] = tg_tensor_name(t);
        ck_assert_int_eq(tg_tensor_set_name(state[i], names[i]), TG_OK);
    }
    /* f64 values load into the f32 model (converted) */
    tg_tensor *w64 = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3));
    fill(w64, 5);
    tg_tensor *saved_w = tg_contiguous(c, tg_model_find(b, "fc.weight"));

    /* errors leave b unchanged */
    const char *bad_names[8];
    memcpy(bad_names, names, sizeof names);
    bad_names[1] = "fc.bais";
    ck_assert_int_eq(tg_model_load(b, n, bad_names, state, true), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(pb), "no parameter or buffer 'fc.bais'"));
    tg_ctx_clear_error(pb);
    ck_assert_int_eq(tg_model_load(b, n - 1, names, state, true), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(pb), "buffer 'bn.num_batches_tracked' missing"));
    tg_ctx_clear_error(pb);
    bad_names[1] = names[0];
    ck_assert_int_eq(tg_model_load(b, n, bad_names, state, false), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(pb), "'fc.weight' given twice"));
    tg_ctx_clear_error(pb);
    tg_tensor *wrong[8];
    memcpy(wrong, state, sizeof state);
    wrong[0] = tg_tensor_new(c, TG_F32, TG_SHAPE(3, 2));
    ck_assert_int_eq(tg_model_load(b, n, names, wrong, true), TG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(pb), "'fc.weight': got [3,2], the model has [2,3]"));
    tg_ctx_clear_error(pb);
    wrong[0] = tg_tensor_new(c, TG_I64, TG_SHAPE(2, 3));
    ck_assert_int_eq(tg_model_load(b, n, names, wrong, true), TG_ERR_DTYPE);
    tg_ctx_clear_error(pb);
    for (int64_t i = 0; i < 6; i++)
        ck_assert_double_eq(tg_get(tg_model_find(b, "fc.weight"), (int64_t[]){i / 3, i % 3}),
                            tg_get(saved_w, (int64_t[]){i / 3, i % 3}));

    /* strict load with the tensors' own names: b equals a */
    ck_assert_int_eq(tg_model_load(b, n, NULL, state, true), TG_OK);
    for (int i = 0; i < n; i++) {
        tg_tensor *ta = i < np ? tg_model_param(a, i) : tg_model_buffer(a, i - np);
        tg_tensor *tb = i < np ? tg_model_param(b, i) : tg_model_buffer(b, i - np);
        for (int64_t k = 0; k < tg_numel(ta); k++) {
            int64_t idx[2] = {tg_ndim(ta) == 2 ? k / 3 : k, k % 3};
            ck_assert_double_eq(tg_get(ta, tg_ndim(ta) == 2 ? idx : &k),
                                tg_get(tb, tg_ndim(tb) == 2 ? idx : &k));
        }
    }
    /* non-strict: unknown names are skipped, the rest loads, with conversion */
    const char *part_names[2] = {"fc.weight", "other.weight"};
    tg_tensor *part[2] = {w64, w64};
    ck_assert_int_eq(tg_model_load(b, 2, part_names, part, false), TG_OK);
    ck_assert_double_eq(tg_get(tg_model_find(b, "fc.weight"), (int64_t[]){1, 2}),
                        (float)(0.5 * sin(0.37 * 5 + 5)));
    tu_assert_ok(pb);
    tg_ctx_free(c);
    tg_ctx_free(pa);
    tg_ctx_free(pb);
}
END_TEST

/* ====================================================================== */
/* Initialisers                                                           */
/* ====================================================================== */

typedef struct {
    double mean, std, lo, hi;
} stats;

static stats stats_of(const tg_tensor *t)
{
    int64_t n = tg_numel(t);
    double *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    if (tg_tensor_dtype(t) == TG_F64) {
        ck_assert_int_eq(tg_copy_out(t, v, (size_t)n * 8), TG_OK);
    } else {
        float *fl = malloc((size_t)n * 4);
        ck_assert_int_eq(tg_copy_out(t, fl, (size_t)n * 4), TG_OK);
        for (int64_t i = 0; i < n; i++) v[i] = fl[i];
        free(fl);
    }
    stats s = {0, 0, INFINITY, -INFINITY};
    for (int64_t i = 0; i < n; i++) {
        s.mean += v[i];
        if (v[i] < s.lo) s.lo = v[i];
        if (v[i] > s.hi) s.hi = v[i];
    }
    s.mean /= (double)n;
    for (int64_t i = 0; i < n; i++) s.std += (v[i] - s.mean) * (v[i] - s.mean);
    s.std = sqrt(s.std / (double)(n - 1));
    free(v);
    return s;
}

/* Uniform in [-b, b]: inside the bounds, reaching near both, std b/sqrt(3). */
static void assert_uniform(const tg_tensor *t, double b)
{
    stats s = stats_of(t);
    ck_assert_msg(s.lo >= -b && s.hi <= b, "[%g, %g] outside +-%g", s.lo, s.hi, b);
    ck_assert_msg(s.lo < -0.95 * b && s.hi > 0.95 * b, "[%g, %g] does not fill +-%g", s.lo, s.hi,
                  b);
    double rel = 4 / sqrt((double)tg_numel(t)); /* about 4 standard errors */
    ck_assert_double_eq_tol(s.std, b / sqrt(3.0), rel * b);
    ck_assert_double_eq_tol(s.mean, 0, rel * b);
}

static void assert_normal(const tg_tensor *t, double mean, double std)
{
    stats s = stats_of(t);
    double rel = 4 / sqrt((double)tg_numel(t));
    ck_assert_double_eq_tol(s.std, std, rel * std);
    ck_assert_double_eq_tol(s.mean, mean, rel * std);
}

START_TEST(test_init)
{
    fixture f = fx_new(TG_F32);
    /* PyTorch's defaults */
    tg_module *l = tg_nn_linear_new(f.m, "fc", 256, 128, true);
    assert_uniform(tg_module_get(l, "weight"), 1 / 16.0);
    assert_uniform(tg_module_get(l, "bias"), 1 / 16.0);
    tg_module *cv = tg_nn_conv2d_new(f.m, "conv", 8, 64, 3, 3, NULL, true);
    assert_uniform(tg_module_get(cv, "weight"), 1 / sqrt(72.0));
    tg_module *e = tg_nn_embedding_new(f.m, "emb", 100, 64);
    assert_normal(tg_module_get(e, "weight"), 0, 1);
    tg_module *g = tg_nn_gru_new(f.m, "gru", 32, 64, NULL);
    assert_uniform(tg_module_get(g, "weight_hh_l0"), 1 / 8.0);
    assert_uniform(tg_module_get(g, "bias_ih_l0"), 1 / 8.0);

    /* the public initialisers, on a [200, 300] tensor: fan_in 300, fan_out 200 */
    tg_tensor *w = tg_tensor_new(f.pc, TG_F64, TG_SHAPE(200, 300));
    int64_t fi, fo;
    ck_assert_int_eq(tg_init_fans(w, &fi, &fo), TG_OK);
    ck_assert_int_eq(fi, 300);
    ck_assert_int_eq(fo, 200);
    ck_assert_int_eq(tg_init_xavier_uniform(w, 1.0), TG_OK);
    assert_uniform(w, sqrt(6.0 / 500));
    ck_assert_int_eq(tg_init_xavier_normal(w, tg_init_gain(TG_NONLIN_TANH, 0)), TG_OK);
    assert_normal(w, 0, 5.0 / 3 * sqrt(2.0 / 500));
    ck_assert_int_eq(tg_init_kaiming_uniform(w, 0, TG_FAN_IN, TG_NONLIN_RELU), TG_OK);
    assert_uniform(w, sqrt(3.0) * sqrt(2.0) / sqrt(300.0));
    ck_assert_int_eq(tg_init_kaiming_normal(w, 0, TG_FAN_OUT, TG_NONLIN_RELU), TG_OK);
    assert_normal(w, 0, sqrt(2.0 / 200));
    ck_assert_int_eq(tg_init_kaiming_normal(w, 0.2, TG_FAN_IN, TG_NONLIN_LEAKY_RELU), TG_OK);
    assert_normal(w, 0, sqrt(2.0 / 1.04) / sqrt(300.0));
    ck_assert_int_eq(tg_init_kaiming_uniform(w, 0, TG_FAN_IN, TG_NONLIN_LINEAR), TG_OK);
    assert_uniform(w, sqrt(3.0 / 300));
    ck_assert_int_eq(tg_init_normal(w, 2.0, 0.5), TG_OK);
    assert_normal(w, 2.0, 0.5);
    ck_assert_int_eq(tg_init_uniform(w, -3, 3), TG_OK);
    assert_uniform(w, 3);
    ck_assert_int_eq(tg_init_ones(w), TG_OK);
    stats s = stats_of(w);
    ck_assert(s.lo == 1 && s.hi == 1);
    ck_assert_int_eq(tg_init_zeros(w), TG_OK);
    s = stats_of(w);
    ck_assert(s.lo == 0 && s.hi == 0);
    ck_assert_int_eq(tg_init_constant(w, -0.25), TG_OK);
    s = stats_of(w);
    ck_assert(s.lo == -0.25 && s.hi == -0.25);
    /* conv fans include the receptive field */
    tg_init_fans(tg_module_get(cv, "weight"), &fi, &fo);
    ck_assert_int_eq(fi, 72);
    ck_assert_int_eq(fo, 576);
    /* strided views are filled in place */
    tg_tensor *tv = tg_transpose(f.pc, w, 0, 1);
    ck_assert_int_eq(tg_init_ones(tv), TG_OK);
    ck_assert_double_eq(tg_get(w, (const int64_t[]){199, 7}), 1);

    /* gains */
    ck_assert_double_eq(tg_init_gain(TG_NONLIN_LINEAR, 0), 1);
    ck_assert_double_eq(tg_init_gain(TG_NONLIN_SIGMOID, 0), 1);
    ck_assert_double_eq_tol(tg_init_gain(TG_NONLIN_TANH, 0), 5.0 / 3, 1e-15);
    ck_assert_double_eq_tol(tg_init_gain(TG_NONLIN_RELU, 0), sqrt(2.0), 1e-15);
    ck_assert_double_eq_tol(tg_init_gain(TG_NONLIN_LEAKY_RELU, sqrt(5.0)), sqrt(1 / 3.0), 1e-15);

    /* errors */
    tg_tensor *v = tg_tensor_new(f.pc, TG_F32, TG_SHAPE(5));
    ck_assert_int_eq(tg_init_xavier_uniform(v, 1), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(f.pc), "tg_init_xavier_uniform"));
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_init_uniform(v, 1, -1), TG_ERR_INVALID);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_init_normal(v, 0, -1), TG_ERR_INVALID);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_init_ones(tg_tensor_new(f.pc, TG_I64, TG_SHAPE(2))), TG_ERR_DTYPE);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_init_zeros(NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_init_fans(v, &fi, &fo), TG_ERR_INVALID);
    fx_free(&f);
}
END_TEST

/* The same seed gives the same weights; another seed, others. */
START_TEST(test_init_seeded)
{
    double sums[3];
    const uint64_t seeds[3] = {7, 7, 8};
    for (int r = 0; r < 3; r++) {
        tg_ctx_opts o = tg_ctx_defaults();
        o.seed = seeds[r];
        tg_ctx *pc = tg_ctx_new_opts(&o);
        tg_model *m = tg_model_new(pc);
        tg_nn_linear_new(m, "a", 5, 4, true);
        tg_nn_lstm_new(m, "b", 3, 2, NULL);
        tu_assert_ok(pc);
        sums[r] = 0;
        for (int i = 0; i < tg_model_nparams(m); i++) {
            tg_tensor *p = tg_model_param(m, i);
            for (int64_t k = 0; k < tg_numel(p); k++) {
                int64_t idx[2] = {k / tg_shape(p)[tg_ndim(p) - 1], k % tg_shape(p)[tg_ndim(p) - 1]};
                sums[r] += (k + 1) * (tg_ndim(p) == 2 ? tg_get(p, idx) : tg_get(p, idx + 1));
            }
        }
        tg_ctx_free(pc);
    }
    ck_assert_double_eq(sums[0], sums[1]);
    ck_assert(sums[0] != sums[2]);
}
END_TEST

/* ====================================================================== */
/* Train and eval                                                         */
/* ====================================================================== */

START_TEST(test_train_eval)
{
    fixture f = fx_new(TG_F64);
    tg_module *d = tg_nn_dropout_new(f.m, "drop", 0.5);
    ck_assert_ptr_nonnull(d);
    tg_tensor *x = tg_full(f.c, TG_F64, TG_SHAPE(1000), 1.0);
    tg_tensor *y = tg_module_forward(f.c, d, x);
    tu_assert_ok(f.c);
    int zeros = 0, twos = 0;
    for (int64_t i = 0; i < 1000; i++) {
        double v = tg_get(y, &i);
        zeros += v == 0;
        twos += v == 2;
    }
    ck_assert_int_eq(zeros + twos, 1000);
    ck_assert_msg(zeros > 400 && zeros < 600, "%d zeros of 1000 at p = 0.5", zeros);
    /* evaluation: the identity, the input itself */
    tg_model_set_training(f.m, false);
    ck_assert_ptr_eq(tg_module_forward(f.c, d, x), x);
    tg_model_set_training(f.m, true);

    /* batch norm: training normalises with the batch, eval with running stats */
    tg_module *bn = tg_nn_batch_norm1d_new(f.m, "bn", 2, 1e-5, 0.5, false);
    tg_tensor *xb = tg_tensor_from(f.c, TG_F64, TG_SHAPE(2, 2), (const double[]){1, 10, 3, 30});
    y = tg_module_forward(f.c, bn, xb);
    tu_assert_values(y, 1e-4, -1, -1, 1, 1);
    /* running: mean 0.5 * 0 + 0.5 * (2, 20); var 0.5 * 1 + 0.5 * (2, 200) (unbiased) */
    tu_assert_values(tg_module_get(bn, "running_mean"), 1e-12, 1, 10);
    tu_assert_values(tg_module_get(bn, "running_var"), 1e-12, 1.5, 100.5);
    tg_model_set_training(f.m, false);
    y = tg_module_forward(f.c, bn, xb);
    tu_assert_values(y, 1e-6, 0, 0, 2 / sqrt(1.5 + 1e-5), 20 / sqrt(100.5 + 1e-5));
    tu_assert_values(tg_module_get(bn, "running_mean"), 1e-12, 1, 10);
    tu_assert_ok(f.c);

    /* recurrent dropout between layers only in training */
    tg_rnn_opts o = tg_rnn_defaults();
    o.num_layers = 2;
    o.dropout = 0.5;
    tg_module *r = tg_nn_gru_new(f.m, "gru", 2, 3, &o);
    tg_tensor *xs = input(f.c, TG_F64, TG_SHAPE(1, 4, 2), 0);
    tg_tensor *e1 = tg_module_forward(f.c, r, xs), *e2 = tg_module_forward(f.c, r, xs);
    for (int64_t i = 0; i < 12; i++)
        ck_assert_double_eq(tg_get(e1, (int64_t[]){0, i / 3, i % 3}),
                            tg_get(e2, (int64_t[]){0, i / 3, i % 3}));
    tu_assert_ok(f.c);
    fx_free(&f);
}
END_TEST

/* ====================================================================== */
/* Gradients reach every parameter                                        */
/* ====================================================================== */

START_TEST(test_grad_flow)
{
    fixture f = fx_new(TG_F32);
    tg_model *m = f.m;
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    /* a CNN: conv, bn, relu, max pool, conv1d over rows, avg pool, linear */
    tg_module *cnn = tg_nn_sequential_new(m, "cnn");
    tg_nn_sequential_add(cnn, tg_nn_conv2d_new(m, "cnn.0", 1, 4, 3, 3, &co, true));
    tg_nn_sequential_add(cnn, tg_nn_batch_norm2d_new(m, "cnn.1", 4, 1e-5, 0.1, true));
    tg_nn_sequential_add(cnn, tg_nn_relu_new(m));
    tg_nn_sequential_add(cnn, tg_nn_max_pool2d_new(m, "cnn.3", &po));
    po.stride[0] = po.stride[1] = 1;
    tg_nn_sequential_add(cnn, tg_nn_avg_pool2d_new(m, "cnn.4", &po));
    tg_nn_sequential_add(cnn, tg_nn_flatten_new(m, 1, -1));
    tg_nn_sequential_add(cnn, tg_nn_dropout_new(m, "cnn.6", 0.1));
    tg_nn_sequential_add(cnn, tg_nn_linear_new(m, "cnn.7", 4 * 2 * 2, 6, true));
    /* a sequence model: embedding, conv1d, rnn, lstm, gru, attention, norm */
    tg_module *emb = tg_nn_embedding_new(m, "emb", 10, 6);
    tg_module *c1 = tg_nn_conv1d_new(m, "c1", 6, 6, 3, &(tg_conv1d_opts){1, 1, 1, 1}, true);
    tg_rnn_opts ro = tg_rnn_defaults();
    ro.num_layers = 2;
    tg_module *rnn = tg_nn_rnn_new(m, "rnn", 6, 6, &ro);
    tg_module *lstm = tg_nn_lstm_new(m, "lstm", 6, 6, &ro);
    tg_module *gru = tg_nn_gru_new(m, "gru", 6, 6, &ro);
    tg_module *attn = tg_nn_mha_new(m, "attn", 6, 2, true, true);
    tg_module *ln = tg_nn_layer_norm_new(m, "ln", TG_SHAPE(6), 1e-5, true);
    tg_module *bn1 = tg_nn_batch_norm1d_new(m, "bn1", 6, 1e-5, 0.1, true);
    tg_module *head = tg_nn_linear_new(m, "head", 6, 1, true);
    tu_assert_ok(f.pc);

    tg_ctx *c = f.c;
    tg_tensor *img = tg_randn(c, TG_F32, TG_SHAPE(2, 1, 6, 6));
    tg_tensor *a = tg_module_forward(c, cnn, img); /* [2, 6] */
    int64_t toks[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0};
    tg_tensor *s = tg_module_forward(c, emb, tg_tensor_from(c, TG_I64, TG_SHAPE(2, 5), toks));
    s = tg_transpose(c, tg_module_forward(c, c1, tg_transpose(c, s, 1, 2)), 1, 2); /* [2,5,6] */
    s = tg_module_forward(c, rnn, s);
    tg_tensor *out, *hn, *cn;
    tg_nn_rnn_forward(c, lstm, s, NULL, NULL, &out, &hn, &cn);
    s = tg_add(c, out,
               tg_unsqueeze(c,
                            tg_add(c, tg_squeeze(c, tg_slice(c, hn, 0, 1, 2, 1), 0),
                                   tg_squeeze(c, tg_slice(c, cn, 0, 1, 2, 1), 0)),
                            1));
    s = tg_module_forward(c, gru, s);
    s = tg_add(c, s, tg_module_forward(c, attn, s));
    s = tg_module_forward(c, ln, s);
    s = tg_module_forward(c, bn1, tg_transpose(c, s, 1, 2)); /* [2, 6, 5] */
    s = tg_mean_axes(c, s, 1, (const int[]){2}, false);      /* [2, 6] */
    tg_tensor *loss = tg_sum(c, tg_module_forward(c, head, tg_mul(c, a, s)));
    tu_assert_ok(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    for (int i = 0; i < tg_model_nparams(m); i++) {
        tg_tensor *p = tg_model_param(m, i);
        tg_tensor *g = tg_grad(p);
        ck_assert_msg(g != NULL, "no gradient reached %s", tg_tensor_name(p));
        assert_shape(g, tg_ndim(p), tg_shape(p));
        stats st = stats_of(g);
        ck_assert_msg(st.lo != 0 || st.hi != 0, "gradient of %s is all zeros", tg_tensor_name(p));
    }
    /* zero_grad keeps the memory and zeroes it */
    tg_tensor *g0 = tg_grad(tg_model_param(m, 0));
    tg_model_zero_grad(m);
    ck_assert_ptr_eq(tg_grad(tg_model_param(m, 0)), g0);
    stats st = stats_of(g0);
    ck_assert(st.lo == 0 && st.hi == 0);
    fx_free(&f);
}
END_TEST

/* A layer composition is differentiable through tg_gradcheck (first and
 * second order) with respect to its input. */
typedef struct {
    tg_module *lstm, *attn;
} gc_user;

static tg_tensor *gc_fn(tg_ctx *c, tg_tensor **in, int n, void *user)
{
    (void)n;
    gc_user *u = user;
    tg_tensor *y = tg_module_forward(c, u->lstm, in[0]);
    return tg_module_forward(c, u->attn, y);
}

START_TEST(test_gradcheck)
{
    fixture f = fx_new(TG_F64);
    gc_user u = {tg_nn_lstm_new(f.m, "lstm", 3, 4, NULL),
                 tg_nn_mha_new(f.m, "attn", 4, 2, true, true)};
    tg_tensor *x = input(f.pc, TG_F64, TG_SHAPE(2, 3, 3), 0);
    tg_set_requires_grad(x, true);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.second_order = true;
    char report[512];
    tg_status s = tg_gradcheck(gc_fn, &u, &x, 1, &o, report, sizeof report);
    ck_assert_msg(s == TG_OK, "%s", report);
    fx_free(&f);
}
END_TEST

/* ====================================================================== */
/* A tiny model learns                                                    */
/* ====================================================================== */

/* Plain SGD through tg_data: p -= lr * grad. */
static void sgd_step(tg_model *m, float lr)
{
    for (int i = 0; i < tg_model_nparams(m); i++) {
        tg_tensor *p = tg_model_param(m, i);
        float *pd = tg_data(p);
        const float *gd = tg_data(tg_grad(p));
        for (int64_t k = 0; k < tg_numel(p); k++) pd[k] -= lr * gd[k];
        tg_tensor_bump_version(p);
        tg_zero_grad(p);
    }
}

/* An MLP 2-16-16-1 (tanh) on the XOR-like target sign(x0 * x1). */
static tg_module *make_mlp(tg_model *m)
{
    tg_module *net = tg_nn_sequential_new(m, "mlp");
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "mlp.0", 2, 16, true));
    tg_nn_sequential_add(net, tg_nn_tanh_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "mlp.2", 16, 16, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "mlp.4", 16, 1, true));
    return net;
}

static void toy_batch(tg_ctx *c, tg_tensor **x, tg_tensor **y)
{
    float xs[64 * 2], ys[64];
    for (int i = 0; i < 64; i++) {
        xs[2 * i] = (float)sin(1.3 * i + 0.2);
        xs[2 * i + 1] = (float)cos(2.1 * i + 0.5);
        ys[i] = xs[2 * i] * xs[2 * i + 1] > 0 ? 1.0f : -1.0f;
    }
    *x = tg_tensor_from(c, TG_F32, TG_SHAPE(64, 2), xs);
    *y = tg_tensor_from(c, TG_F32, TG_SHAPE(64, 1), ys);
}

START_TEST(test_mlp_trains)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.seed = 42;
    tg_ctx *pc = tg_ctx_new_opts(&o), *c = tu_ctx();
    tg_model *m = tg_model_new(pc);
    tg_module *net = make_mlp(m);
    tu_assert_ok(pc);
    double first = 0, last = 0;
    for (int step = 0; step < 50; step++) {
        tg_ctx_reset(c);
        tg_tensor *x, *y;
        toy_batch(c, &x, &y);
        tg_tensor *loss = tg_mse_loss(c, tg_module_forward(c, net, x), y);
        ck_assert_int_eq(tg_backward(c, loss), TG_OK);
        if (step == 0) first = tg_item(loss);
        last = tg_item(loss);
        sgd_step(m, 0.1f);
    }
    ck_assert_msg(last < 0.7 * first, "loss %g -> %g over 50 steps", first, last);
    tg_ctx_free(c);
    tg_ctx_free(pc);
}
END_TEST

/* ====================================================================== */
/* Errors name the layer and the function                                 */
/* ====================================================================== */

static void assert_err(tg_ctx *c, tg_status want, const char *part1, const char *part2)
{
    ck_assert_msg(tg_ctx_status(c) == want, "status %s, expected %s (%s)",
                  tg_status_str(tg_ctx_status(c)), tg_status_str(want), tg_ctx_errmsg(c));
    ck_assert_msg(strstr(tg_ctx_errmsg(c), part1), "'%s' not in '%s'", part1, tg_ctx_errmsg(c));
    if (part2)
        ck_assert_msg(strstr(tg_ctx_errmsg(c), part2), "'%s' not in '%s'", part2, tg_ctx_errmsg(c));
    tg_ctx_clear_error(c);
}

START_TEST(test_errors)
{
    fixture f = fx_new(TG_F32);
    tg_model *m = f.m;
    tg_ctx *c = f.c;
    /* constructors */
    ck_assert_ptr_null(tg_nn_linear_new(m, "fc1", 0, 3, true));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_linear_new: 'fc1'", "in_features 0");
    ck_assert_ptr_null(tg_nn_conv2d_new(m, "conv", 3, 4, 3, 3,
                                        &(tg_conv2d_opts){{1, 1}, {0, 0}, {1, 1}, 2}, true));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_conv2d_new: 'conv'", "groups 2");
    ck_assert_ptr_null(tg_nn_mha_new(m, "attn", 6, 4, true, false));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_mha_new: 'attn'", "num_heads 4");
    ck_assert_ptr_null(tg_nn_lstm_new(m, "lstm", 3, 0, NULL));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_lstm_new: 'lstm'", NULL);
    ck_assert_ptr_null(tg_nn_dropout_new(m, "drop", 1.5));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_dropout_new: 'drop'", NULL);
    ck_assert_ptr_null(tg_nn_max_pool2d_new(m, "pool", NULL));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_max_pool2d_new: 'pool'", NULL);
    ck_assert_ptr_null(tg_nn_batch_norm1d_new(m, "bn", 3, 1e-5, 2.0, true));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_batch_norm1d_new: 'bn'", "momentum");
    ck_assert_ptr_null(tg_nn_layer_norm_new(m, "ln", 0, NULL, 1e-5, true));
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_layer_norm_new: 'ln'", NULL);
    ck_assert_ptr_null(tg_nn_linear_new(NULL, "x", 1, 1, true));
    ck_assert_int_eq(tg_model_nparams(m), 0);

    /* a model whose context holds an error makes nothing (sticky) */
    tg_ctx_set_error(f.pc, TG_ERR_IO, "earlier");
    ck_assert_ptr_null(tg_nn_linear_new(m, "late", 2, 2, true));
    assert_err(f.pc, TG_ERR_IO, "earlier", NULL);

    /* forwards: wrong input shapes name the function, the kind and the layer */
    tg_module *fc = tg_nn_linear_new(m, "fc1", 4, 3, true);
    tg_module *cv = tg_nn_conv2d_new(m, "conv", 3, 4, 3, 3, NULL, true);
    tg_module *bn = tg_nn_batch_norm2d_new(m, "bn", 4, 1e-5, 0.1, true);
    tg_module *ln = tg_nn_layer_norm_new(m, "ln", TG_SHAPE(4), 1e-5, true);
    tg_module *emb = tg_nn_embedding_new(m, "emb", 5, 4);
    tg_module *gru = tg_nn_gru_new(m, "gru", 4, 3, NULL);
    tg_module *attn = tg_nn_mha_new(m, "attn", 4, 2, true, false);
    tg_module *seq = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(seq, fc);
    tu_assert_ok(f.pc);

    tg_tensor *x5 = tg_tensor_new(c, TG_F32, TG_SHAPE(8, 5));
    ck_assert_ptr_null(tg_module_forward(c, fc, x5));
    assert_err(c, TG_ERR_SHAPE, "tg_module_forward: linear 'fc1': input [8,5]", "in_features is 4");
    ck_assert_ptr_null(tg_module_forward(c, seq, x5)); /* inside a sequential, the same */
    assert_err(c, TG_ERR_SHAPE, "linear 'fc1'", NULL);
    ck_assert_ptr_null(tg_module_forward(c, cv, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 3, 8))));
    assert_err(c, TG_ERR_SHAPE, "tg_module_forward: conv2d 'conv'", "expected 4 dims");
    ck_assert_ptr_null(tg_module_forward(c, cv, tg_tensor_new(c, TG_F32, TG_SHAPE(1, 2, 8, 8))));
    assert_err(c, TG_ERR_SHAPE, "conv2d 'conv'", "in_channels is 3");
    /* an error of the op itself is prefixed with the layer */
    ck_assert_ptr_null(tg_module_forward(c, cv, tg_tensor_new(c, TG_F32, TG_SHAPE(1, 3, 2, 2))));
    assert_err(c, TG_ERR_SHAPE, "tg_module_forward: conv2d 'conv': tg_conv2d", NULL);
    ck_assert_ptr_null(tg_module_forward(c, bn, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 4, 3))));
    assert_err(c, TG_ERR_SHAPE, "batch_norm2d 'bn'", NULL);
    ck_assert_ptr_null(tg_module_forward(c, ln, x5));
    assert_err(c, TG_ERR_SHAPE, "layer_norm 'ln'", "normalized_shape [4]");
    ck_assert_ptr_null(tg_module_forward(c, emb, x5));
    assert_err(c, TG_ERR_DTYPE, "embedding 'emb'", "i64");
    tg_tensor *bad_idx = tg_tensor_from(c, TG_I64, TG_SHAPE(1), (const int64_t[]){7});
    ck_assert_ptr_null(tg_module_forward(c, emb, bad_idx));
    assert_err(c, TG_ERR_INVALID, "embedding 'emb': tg_embedding", NULL);
    tg_tensor *seq_x = tg_tensor_new(c, TG_F32, TG_SHAPE(2, 3, 4));
    tg_tensor *out = (tg_tensor *)1, *hn;
    ck_assert_ptr_null(tg_nn_rnn_forward(c, gru, x5, NULL, NULL, &out, &hn, NULL));
    ck_assert_ptr_null(out);
    assert_err(c, TG_ERR_SHAPE, "tg_nn_rnn_forward: gru 'gru'", "input [8,5]");
    ck_assert_ptr_null(tg_nn_rnn_forward(c, gru, seq_x, tg_tensor_new(c, TG_F32, TG_SHAPE(1, 2, 4)),
                                         NULL, &out, &hn, NULL));
    assert_err(c, TG_ERR_SHAPE, "gru 'gru'", "h0 [1,2,4]");
    ck_assert_ptr_null(tg_nn_rnn_forward(
        c, gru, seq_x, NULL, tg_tensor_new(c, TG_F32, TG_SHAPE(1, 2, 3)), &out, &hn, NULL));
    assert_err(c, TG_ERR_INVALID, "gru 'gru'", "c0");
    ck_assert_ptr_null(tg_nn_rnn_forward(c, fc, seq_x, NULL, NULL, &out, NULL, NULL));
    assert_err(c, TG_ERR_INVALID, "tg_nn_rnn_forward: linear 'fc1'", "not a recurrent");
    ck_assert_ptr_null(tg_nn_rnn_forward(c, gru, tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3, 4)), NULL,
                                         NULL, &out, NULL, NULL));
    assert_err(c, TG_ERR_DTYPE, "gru 'gru'", "f64");
    ck_assert_ptr_null(tg_nn_mha_forward(c, attn, seq_x, x5, seq_x, NULL));
    assert_err(c, TG_ERR_SHAPE, "tg_nn_mha_forward: multihead_attention 'attn'", "key [8,5]");
    ck_assert_ptr_null(tg_nn_mha_forward(c, fc, seq_x, seq_x, seq_x, NULL));
    assert_err(c, TG_ERR_INVALID, "not a multi-head attention", NULL);

    /* sticky: NULL in, NULL out, the first error kept */
    ck_assert_ptr_null(tg_module_forward(c, fc, NULL));
    assert_err(c, TG_ERR_INVALID, "tg_module_forward: NULL input", NULL);
    ck_assert_ptr_null(tg_module_forward(c, fc, x5));
    ck_assert_ptr_null(tg_module_forward(c, seq, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 4))));
    ck_assert_ptr_null(tg_nn_rnn_forward(c, gru, seq_x, NULL, NULL, &out, NULL, NULL));
    assert_err(c, TG_ERR_SHAPE, "input [8,5]", NULL);
    ck_assert_ptr_nonnull(tg_module_forward(c, seq, tg_tensor_new(c, TG_F32, TG_SHAPE(2, 4))));

    /* sequential misuse */
    ck_assert_int_eq(tg_nn_sequential_add(seq, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(f.pc);
    ck_assert_int_eq(tg_nn_sequential_add(fc, cv), TG_ERR_INVALID);
    assert_err(f.pc, TG_ERR_INVALID, "tg_nn_sequential_add", "not a sequential");
    ck_assert_int_eq(tg_nn_sequential_add(seq, seq), TG_ERR_INVALID);
    tg_ctx_clear_error(f.pc);
    tg_ctx *pc2 = tu_ctx();
    tg_model *m2 = tg_model_new(pc2);
    ck_assert_int_eq(tg_nn_sequential_add(seq, tg_nn_relu_new(m2)), TG_ERR_INVALID);
    assert_err(f.pc, TG_ERR_INVALID, "another model", NULL);
    tg_ctx_free(pc2);
    fx_free(&f);
}
END_TEST

/* ====================================================================== */
/* No heap allocation in a steady-state step                              */
/* ====================================================================== */

typedef struct {
    long allocs, frees;
} counter;

static void *counting(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *k = ud;
    (void)osize;
    if (nsize == 0) {
        k->frees++;
        free(ptr);
        return NULL;
    }
    k->allocs++;
    return malloc(nsize);
}

/* Model `which` (0: MLP, 1: CNN, 2: sequence model) in m; *extra is the
 * sequence model's embedding. */
static tg_module *alloc_model(tg_model *m, int which, tg_module **extra)
{
    tg_module *net = tg_nn_sequential_new(m, "net");
    *extra = NULL;
    if (which == 0) { /* MLP 64-128-10 with dropout and layer norm */
        tg_nn_sequential_add(net, tg_nn_linear_new(m, "net.0", 64, 128, true));
        tg_nn_sequential_add(net, tg_nn_relu_new(m));
        tg_nn_sequential_add(net, tg_nn_dropout_new(m, "net.2", 0.2));
        tg_nn_sequential_add(net, tg_nn_layer_norm_new(m, "net.3", TG_SHAPE(128), 1e-5, true));
        tg_nn_sequential_add(net, tg_nn_linear_new(m, "net.4", 128, 10, true));
    } else if (which == 1) { /* CNN: conv, batch norm, relu, pool, linear */
        tg_conv2d_opts co = tg_conv2d_defaults();
        co.padding[0] = co.padding[1] = 1;
        tg_pool2d_opts po = tg_pool2d_defaults();
        po.kernel[0] = po.kernel[1] = 2;
        tg_nn_sequential_add(net, tg_nn_conv2d_new(m, "net.0", 1, 8, 3, 3, &co, true));
        tg_nn_sequential_add(net, tg_nn_batch_norm2d_new(m, "net.1", 8, 1e-5, 0.1, true));
        tg_nn_sequential_add(net, tg_nn_relu_new(m));
        tg_nn_sequential_add(net, tg_nn_max_pool2d_new(m, "net.3", &po));
        tg_nn_sequential_add(net, tg_nn_flatten_new(m, 1, -1));
        tg_nn_sequential_add(net, tg_nn_linear_new(m, "net.5", 8 * 4 * 4, 10, true));
    } else { /* sequence: embedding, LSTM, causal attention, mean over time */
        *extra = tg_nn_embedding_new(m, "emb", 10, 16);
        tg_nn_sequential_add(net, tg_nn_lstm_new(m, "net.0", 16, 16, NULL));
        tg_nn_sequential_add(net, tg_nn_mha_new(m, "net.1", 16, 4, true, true));
        tg_nn_sequential_add(net, tg_nn_gelu_new(m));
        tg_nn_sequential_add(net, tg_nn_linear_new(m, "net.3", 16, 10, true));
    }
    return net;
}

static tg_tensor *alloc_step_loss(tg_ctx *c, int which, tg_module *net, tg_module *extra)
{
    int64_t labels[32];
    for (int i = 0; i < 32; i++) labels[i] = i % 10;
    tg_tensor *y = tg_tensor_from(c, TG_I64, TG_SHAPE(32), labels);
    if (which == 0)
        return tg_cross_entropy(c, tg_module_forward(c, net, tg_randn(c, TG_F32, TG_SHAPE(32, 64))),
                                y);
    if (which == 1)
        return tg_cross_entropy(
            c, tg_module_forward(c, net, tg_randn(c, TG_F32, TG_SHAPE(32, 1, 8, 8))), y);
    int64_t toks[32 * 6];
    for (int i = 0; i < 32 * 6; i++) toks[i] = (i * 7) % 10;
    tg_tensor *e = tg_module_forward(c, extra, tg_tensor_from(c, TG_I64, TG_SHAPE(32, 6), toks));
    tg_tensor *h = tg_module_forward(c, net, e); /* [32, 6, 10] */
    return tg_cross_entropy(c, tg_mean_axes(c, h, 1, (const int[]){1}, false), y);
}

/* Forward + backward + an SGD update of each model, with a counting
 * allocator on both contexts: after the warm-up steps (the step arena
 * grows, merges on reset; gradients are allocated once) no step calls the
 * allocator. */
START_TEST(test_no_alloc)
{
    int which = _i;
    counter kp = {0, 0}, kc = {0, 0};
    tg_ctx_opts o = tg_ctx_defaults();
    o.alloc = counting;
    o.alloc_ud = &kp;
    o.n_threads = 2;
    tg_ctx *pc = tg_ctx_new_opts(&o);
    o.alloc_ud = &kc;
    o.arena_chunk = 4096; /* small, so the step arena has to grow and merge */
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(pc);
    ck_assert_ptr_nonnull(c);
    tg_model *m = tg_model_new(pc);
    tg_module *extra;
    tg_module *net = alloc_model(m, which, &extra);
    tu_assert_ok(pc);
    long before_p = 0, before_c = 0;
    for (int step = 0; step < 8; step++) {
        if (step == 3) {
            before_p = kp.allocs + kp.frees;
            before_c = kc.allocs + kc.frees;
        }
        tg_ctx_reset(c);
        tg_tensor *loss = alloc_step_loss(c, which, net, extra);
        tu_assert_ok(c);
        ck_assert_int_eq(tg_backward(c, loss), TG_OK);
        sgd_step(m, 0.01f);
    }
    ck_assert_msg(kp.allocs + kp.frees == before_p,
                  "model %d, persistent context: %ld allocator calls in 5 steady steps", which,
                  kp.allocs + kp.frees - before_p);
    ck_assert_msg(kc.allocs + kc.frees == before_c,
                  "model %d, step context: %ld allocator calls in 5 steady steps", which,
                  kc.allocs + kc.frees - before_c);
    ck_assert(kc.allocs > 1); /* the hook was used */
    tg_ctx_free(c);
    tg_ctx_free(pc);
    ck_assert_int_eq(kp.allocs, kp.frees);
    ck_assert_int_eq(kc.allocs, kc.frees);
}
END_TEST

Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tu_tcase("reference");
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_conv);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_layer_norm);
    tcase_add_test(tc, test_batch_norm);
    tcase_add_test(tc, test_sequential);
    tcase_add_test(tc, test_rnn);
    tcase_add_test(tc, test_lstm);
    tcase_add_test(tc, test_gru);
    tcase_add_test(tc, test_attention);
    suite_add_tcase(s, tc);

    tc = tu_tcase("registry");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_model_load);
    tcase_add_test(tc, test_init);
    tcase_add_test(tc, test_init_seeded);
    tcase_add_test(tc, test_train_eval);
    suite_add_tcase(s, tc);

    tc = tu_tcase("training");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_grad_flow);
    tcase_add_test(tc, test_gradcheck);
    tcase_add_test(tc, test_mlp_trains);
    tcase_add_loop_test(tc, test_no_alloc, 0, 3);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors");
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
