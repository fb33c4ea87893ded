/*
 * test_loss.c - the loss suite: forward values and gradients of every loss
 * against PyTorch 1.13 (f64 and f32, every reduction), ignore_index, class
 * weights, label smoothing, stability at logits of 1e4, the all-ignored
 * mean, thread-count independence, strided inputs and error messages.
 *
 * The reference tables below were printed by PyTorch 1.13.1 (Debian's
 * python3-torch) in float64; each row names the expression it came from.
 * Gradients are those of y.sum() (of y itself for a 0-d loss).
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

#define R_MEAN TG_REDUCE_MEAN
#define R_SUM TG_REDUCE_SUM
#define R_NONE TG_REDUCE_NONE
#define R_BATCHMEAN TG_REDUCE_BATCHMEAN

typedef enum { K_MSE, K_L1, K_SMOOTH_L1, K_HUBER, K_BCE, K_BCE_LOGITS, K_KL } loss_kind;

/* One pointwise case on [2,3] inputs. flag: pos_weight PW (bce_with_logits)
 * or log_target (kl_div, whose target is then TKL). */
typedef struct {
    loss_kind kind;
    tg_reduction red;
    double param; /* beta, delta */
    int flag;
    int ny;
    double y[6];
    double dx[6];
    bool has_dt; /* compare the target's gradient too */
    double dt[6];
} pw_ref;

/* One class-axis case: input X [4,5] / X3 [2,3,2] / XS [2,3]. */
typedef struct {
    bool ce; /* cross_entropy_ex, else nll_loss */
    const double *x;
    const int64_t *lab;
    const double *w;
    tg_reduction red;
    int64_t ignore;
    double smoothing;
    int ny;
    double y[4];
    double dx[20];
} cls_ref;

/* clang-format off */
/* inputs */
static const double P[] = {0.3, -1.2, 2.5, 0.05, 0.9, -0.4};
static const double T[] = {0.1, 0.8, 1.0, -0.6, 0.95, -0.3};
static const double PB[] = {0.2, 0.9, 0.5, 0.0, 1.0, 0.7};
static const double TB[] = {0.0, 1.0, 0.3, 0.4, 0.6, 1.0};
static const double Z[] = {0.3, -1.2, 2.5, 10000.0, -10000.0, -0.4};
static const double PW[] = {2.0, 0.5, 1.5};
static const double LQ[] = {-2.327096582800486, -3.827096582800486, -0.12709658280048583, -1.3805969123256698,
      -0.5305969123256699, -1.83059691232567};
static const double TK[] = {0.2, 0.0, 0.8, 0.5, 0.25, 0.25};
static const double TKL[] = {-1.203972804325936, -2.3025850929940455, -0.10536051565782628, -0.5108256237659907,
      -1.0498221244986778, -1.0498221244986778};
static const pw_ref pw_refs[] = {
    /* F.mse_loss(P, T, reduction='mean') */
    {K_MSE, R_MEAN, 0, 0, 1, {1.1208333333333333},
     {0.06666666666666665, -0.6666666666666666, 0.5, 0.21666666666666667,
      -0.016666666666666642, -0.03333333333333334},
     true, {-0.06666666666666665, 0.6666666666666666, -0.5, -0.21666666666666667,
      0.016666666666666642, 0.03333333333333334}},
    /* F.l1_loss(P, T, reduction='mean') */
    {K_L1, R_MEAN, 0, 0, 1, {0.75},
     {0.16666666666666666, -0.16666666666666666, 0.16666666666666666, 0.16666666666666666,
      -0.16666666666666666, -0.16666666666666666},
     true, {-0.16666666666666666, 0.16666666666666666, -0.16666666666666666, -0.16666666666666666,
      0.16666666666666666, 0.16666666666666666}},
    /* F.smooth_l1_loss(P, T, reduction='mean', beta=0.5) */
    {K_SMOOTH_L1, R_MEAN, 0.5, 0, 1, {0.5754166666666667},
     {0.06666666666666665, -0.16666666666666666, 0.16666666666666666, 0.16666666666666666,
      -0.016666666666666642, -0.03333333333333334},
     true, {-0.06666666666666665, 0.16666666666666666, -0.16666666666666666, -0.16666666666666666,
      0.016666666666666642, 0.03333333333333334}},
    /* F.huber_loss(P, T, reduction='mean', delta=0.7) */
    {K_HUBER, R_MEAN, 0.7, 0, 1, {0.36624999999999996},
     {0.033333333333333326, -0.11666666666666665, 0.11666666666666665, 0.10833333333333334,
      -0.008333333333333321, -0.01666666666666667},
     true, {-0.033333333333333326, 0.11666666666666665, -0.11666666666666665,
      -0.10833333333333334, 0.008333333333333321, 0.01666666666666667}},
    /* F.binary_cross_entropy(PB, TB, reduction='mean') */
    {K_BCE, R_MEAN, 0, 0, 1, {13.56305436524512},
     {0.2083333333333333, -0.1851851851851852, 0.13333333333333333, -66666666933.05353,
      66666666933.05353, -0.2380952380952381},
     false, {0}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='mean') */
    {K_BCE_LOGITS, R_MEAN, 0, 0, 1, {2000.8432571164167},
     {0.09574041946860984, -0.12808746391650294, 0.10402363666312608, 0.09999999999999999,
      -0.09999999999999999, -0.09978127668540866},
     true, {-0.049999999999999996, 0.19999999999999998, -0.4166666666666667, -1666.6666666666667,
      1666.6666666666667, 0.06666666666666667}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='mean', pos_weight=PW) */
    {K_BCE_LOGITS, R_MEAN, 0, 1, 1, {1500.799373758529},
     {0.09574041946860984, -0.06404373195825147, 0.10212718216259502, 0.09999999999999998,
      -0.049999999999999996, -0.149671915028113},
     true, {0.042392540744754514, 0.07805979438849739, -0.41009252214228753, -1666.6666666666667,
      833.3333333333334, 0.14275127103332938}},
    /* F.mse_loss(P, T, reduction='sum') */
    {K_MSE, R_SUM, 0, 0, 1, {6.7250000000000005},
     {0.39999999999999997, -4.0, 3.0, 1.3, -0.09999999999999987, -0.20000000000000007},
     true, {-0.39999999999999997, 4.0, -3.0, -1.3, 0.09999999999999987, 0.20000000000000007}},
    /* F.l1_loss(P, T, reduction='sum') */
    {K_L1, R_SUM, 0, 0, 1, {4.5},
     {1.0, -1.0, 1.0, 1.0, -1.0, -1.0},
     true, {-1.0, 1.0, -1.0, -1.0, 1.0, 1.0}},
    /* F.smooth_l1_loss(P, T, reduction='sum', beta=0.5) */
    {K_SMOOTH_L1, R_SUM, 0.5, 0, 1, {3.4525},
     {0.39999999999999997, -1.0, 1.0, 1.0, -0.09999999999999987, -0.20000000000000007},
     true, {-0.39999999999999997, 1.0, -1.0, -1.0, 0.09999999999999987, 0.20000000000000007}},
    /* F.huber_loss(P, T, reduction='sum', delta=0.7) */
    {K_HUBER, R_SUM, 0.7, 0, 1, {2.1975},
     {0.19999999999999998, -0.7, 0.7, 0.65, -0.04999999999999993, -0.10000000000000003},
     true, {-0.19999999999999998, 0.7, -0.7, -0.65, 0.04999999999999993, 0.10000000000000003}},
    /* F.binary_cross_entropy(PB, TB, reduction='sum') */
    {K_BCE, R_SUM, 0, 0, 1, {81.37832619147072},
     {1.2499999999999998, -1.1111111111111112, 0.8, -400000001598.32117, 400000001598.32117,
      -1.4285714285714286},
     false, {0}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='sum') */
    {K_BCE_LOGITS, R_SUM, 0, 0, 1, {12005.0595426985},
     {0.574442516811659, -0.7685247834990176, 0.6241418199787565, 0.6, -0.6,
      -0.598687660112452},
     true, {-0.3, 1.2, -2.5, -10000.0, 10000.0, 0.4}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='sum', pos_weight=PW) */
    {K_BCE_LOGITS, R_SUM, 0, 1, 1, {9004.796242551174},
     {0.574442516811659, -0.3842623917495088, 0.6127630929755701, 0.5999999999999999, -0.3,
      -0.898031490168678},
     true, {0.2543552444685271, 0.46835876633098433, -2.460555132853725, -10000.0, 5000.0,
      0.8565076261999763}},
    /* F.mse_loss(P, T, reduction='none') */
    {K_MSE, R_NONE, 0, 0, 6, {0.039999999999999994, 4.0, 2.25, 0.42250000000000004, 0.0024999999999999935,
      0.010000000000000007},
     {0.39999999999999997, -4.0, 3.0, 1.3, -0.09999999999999987, -0.20000000000000007},
     true, {-0.39999999999999997, 4.0, -3.0, -1.3, 0.09999999999999987, 0.20000000000000007}},
    /* F.l1_loss(P, T, reduction='none') */
    {K_L1, R_NONE, 0, 0, 6, {0.19999999999999998, 2.0, 1.5, 0.65, 0.04999999999999993, 0.10000000000000003},
     {1.0, -1.0, 1.0, 1.0, -1.0, -1.0},
     true, {-1.0, 1.0, -1.0, -1.0, 1.0, 1.0}},
    /* F.smooth_l1_loss(P, T, reduction='none', beta=0.5) */
    {K_SMOOTH_L1, R_NONE, 0.5, 0, 6, {0.039999999999999994, 1.75, 1.25, 0.4, 0.0024999999999999935, 0.010000000000000007},
     {0.39999999999999997, -1.0, 1.0, 1.0, -0.09999999999999987, -0.20000000000000007},
     true, {-0.39999999999999997, 1.0, -1.0, -1.0, 0.09999999999999987, 0.20000000000000007}},
    /* F.huber_loss(P, T, reduction='none', delta=0.7) */
    {K_HUBER, R_NONE, 0.7, 0, 6, {0.019999999999999997, 1.1549999999999998, 0.8049999999999999, 0.21125000000000002,
      0.0012499999999999968, 0.005000000000000004},
     {0.19999999999999998, -0.7, 0.7, 0.65, -0.04999999999999993, -0.10000000000000003},
     true, {-0.19999999999999998, 0.7, -0.7, -0.65, 0.04999999999999993, 0.10000000000000003}},
    /* F.binary_cross_entropy(PB, TB, reduction='none') */
    {K_BCE, R_NONE, 0, 0, 6, {0.2231435513142097, 0.10536051565782628, 0.6931471805599453, 40.0, 40.0,
      0.35667494393873245},
     {1.2499999999999998, -1.1111111111111112, 0.8, -400000001598.32117, 400000001598.32117,
      -1.4285714285714286},
     false, {0}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='none') */
    {K_BCE_LOGITS, R_NONE, 0, 0, 6, {0.854355244468527, 1.4632824673380314, 1.8288897342925496, 6000.0, 6000.0,
      0.9130152523999525},
     {0.574442516811659, -0.7685247834990176, 0.6241418199787565, 0.6, -0.6,
      -0.598687660112452},
     true, {-0.3, 1.2, -2.5, -10000.0, 10000.0, 0.4}},
    /* F.binary_cross_entropy_with_logits(Z, TB, reduction='none', pos_weight=PW) */
    {K_BCE_LOGITS, R_NONE, 0, 1, 6, {0.854355244468527, 0.7316412336690157, 1.840723194436432, 6000.0, 3000.0,
      1.3695228785999287},
     {0.574442516811659, -0.3842623917495088, 0.6127630929755701, 0.5999999999999999, -0.3,
      -0.898031490168678},
     true, {0.2543552444685271, 0.46835876633098433, -2.460555132853725, -10000.0, 5000.0,
      0.8565076261999763}},
    /* F.kl_div(LQ, TK, reduction='mean') (dTK not differentiable at TK = 0: not compared) */
    {K_KL, R_MEAN, 0, 0, 1, {0.05126171679134167},
     {-0.03333333333333333, -0.0, -0.13333333333333333, -0.08333333333333333,
      -0.041666666666666664, -0.041666666666666664},
     false, {0}},
    /* F.kl_div(LQ, TKL, reduction='mean', log_target=True) */
    {K_KL, R_MEAN, 0, 1, 1, {0.1870593112610174},
     {-0.05, -0.01666666666666667, -0.15, -0.09999999999999999, -0.05833333333333332,
      -0.05833333333333332},
     true, {0.10615618892372752, 0.04207519149677402, 0.15326041007139893, 0.1869771288559679,
      0.02804519595657453, 0.10387852928990784}},
    /* F.kl_div(LQ, TK, reduction='sum') (dTK not differentiable at TK = 0: not compared) */
    {K_KL, R_SUM, 0, 0, 1, {0.30757030074805003},
     {-0.2, -0.0, -0.8, -0.5, -0.25, -0.25},
     false, {0}},
    /* F.kl_div(LQ, TKL, reduction='sum', log_target=True) */
    {K_KL, R_SUM, 0, 1, 1, {1.1223558675661045},
     {-0.30000000000000004, -0.10000000000000002, -0.9, -0.6, -0.3499999999999999,
      -0.3499999999999999},
     true, {0.6369371335423651, 0.25245114898064414, 0.9195624604283936, 1.1218627731358075,
      0.16827117573944717, 0.6232711757394471}},
    /* F.kl_div(LQ, TK, reduction='none') (dTK not differentiable at TK = 0: not compared) */
    {K_KL, R_NONE, 0, 0, 6, {0.14353173407327718, 0.0, -0.07683757481097911, 0.3437248658828623,
      -0.21392436219855518, 0.11107563780144486},
     {-0.2, -0.0, -0.8, -0.5, -0.25, -0.25},
     false, {0}},
    /* F.kl_div(LQ, TKL, reduction='none', log_target=True) */
    {K_KL, R_NONE, 0, 1, 6, {0.3369371335423651, 0.1524511489806441, 0.019562460428393595, 0.5218627731358074,
      -0.18172882426055276, 0.2732711757394472},
     {-0.30000000000000004, -0.10000000000000002, -0.9, -0.6, -0.3499999999999999,
      -0.3499999999999999},
     true, {0.6369371335423651, 0.25245114898064414, 0.9195624604283936, 1.1218627731358075,
      0.16827117573944717, 0.6232711757394471}},
    /* F.kl_div(LQ, TK, reduction='batchmean') (dTK not differentiable at TK = 0: not compared) */
    {K_KL, R_BATCHMEAN, 0, 0, 1, {0.15378515037402501},
     {-0.1, -0.0, -0.4, -0.25, -0.125, -0.125},
     false, {0}},
    /* F.kl_div(LQ, TKL, reduction='batchmean', log_target=True) */
    {K_KL, R_BATCHMEAN, 0, 1, 1, {0.5611779337830523},
     {-0.15000000000000002, -0.05000000000000001, -0.45, -0.3, -0.17499999999999996,
      -0.17499999999999996},
     true, {0.31846856677118257, 0.12622557449032207, 0.4597812302141968, 0.5609313865679038,
      0.08413558786972358, 0.31163558786972356}},
};
/* d/dPW of ((1 - TB) * Z + (1 + (PW - 1) * TB) * F.softplus(-Z)).mean() */
static const double DPW_MEAN[] = {0.0, 1000.2438804112229, 0.15611369544795292};
/* d/dTB of -(TB * clamp(log(PB), min=-100) + (1 - TB) * clamp(log(1 - PB), min=-100)).sum() */
static const double DTB_BCE_SUM[] = {1.3862943611198906, -2.1972245773362196, 0.0, 100.0, -100.0, -0.8472978603872034};
/* class-axis inputs */
static const double X[] = {0.2, -1.0, 0.5, 1.5, -0.3, 1.1, 0.0, -0.7, 0.3, 2.0, -0.4, 0.8, 0.1, -1.2, 0.6, 0.9,
      -0.2, 1.3, 0.4, -1.5};
static const double W[] = {0.5, 1.0, 2.0, 1.5, 0.25};
static const double X3[] = {0.2, -1.0, 0.5, 1.5, -0.3, 1.1, 0.0, -0.7, 0.3, 2.0, -0.4, 0.8};
static const double W3[] = {0.5, 2.0, 1.5};
static const double XS[] = {10000.0, 0.0, -10000.0, 0.0, 10000.0, 10000.0};
static const int64_t L[] = {1, 0, 4, 2}, L3[] = {2, 0, 1, -100}, LS[] = {2, 1};
static const cls_ref cls_refs[] = {
    /* F.cross_entropy(X, L) */
    {true, X, L, NULL, R_MEAN, -100, 0.0, 1, {1.672477976251808},
     {0.03609128315819217, -0.23912951441226818, 0.04871813644780518, 0.1324296250224571,
      0.021890469783813753, -0.1932733807107589, 0.018882651237338073, 0.00937684710108076,
      0.025488913083106718, 0.1395249692892333, 0.027362928461892234, 0.09084812184195795,
      0.04511384218376767, 0.012294956300995679, -0.17561984878861353, 0.07098351705997051,
      0.023628360248453505, -0.14410503612449554, 0.043053679431106884,
      0.006439479384964623}},
    /* F.cross_entropy(X, L, weight=W, ignore_index=4, label_smoothing=0.1) */
    {true, X, L, W, R_MEAN, 4, 0.1, 1, {1.6139121157796292},
     {0.03859627379883787, -0.2503716136963766, 0.04452768814862196, 0.1435334550257936,
      0.023714196723123228, -0.09544768719368137, 0.006262710213397293,
      -0.0054809712673144885, 0.007595824869856262, 0.08707012337774227, 0.0, 0.0, 0.0, 0.0,
      0.0, 0.1516841142848501, 0.04572803002663307, -0.29516582150533033,
      0.08516258207572415, 0.012591095118122982}},
    /* F.cross_entropy(X, L, weight=W, reduction='sum', label_smoothing=0.2) */
    {true, X, L, W, R_SUM, -100, 0.2, 1, {6.359371587178783},
     {0.12580878395909637, -0.7960832382255635, 0.11682127124913291, 0.4750156850907266,
      0.07843749792660756, -0.2815870489342517, 0.006073669019104905, -0.05712049307336294,
      0.002192947922780404, 0.3304409250657293, 0.024875202677503268, 0.10899091982081105,
      -0.006013298818621019, -0.039836271666367086, -0.0880165520133262,
      0.49392066351418656, 0.1310693281988034, -0.9133204615413477, 0.2517086390812139,
      0.03662183074714388}},
    /* F.cross_entropy(X, L, weight=W, ignore_index=4, reduction='none', label_smoothing=0.1) */
    {true, X, L, W, R_NONE, 4, 0.1, 4, {3.000586593169681, 0.936685624419942, 0.0, 1.711420187639079},
     {0.13508695829593254, -0.8763006479373181, 0.15584690852017682, 0.5023670925902776,
      0.0829996885309313, -0.33406690517788473, 0.021919485746890524, -0.01918339943560071,
      0.02658538704449692, 0.30474543182209796, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5308943999969753,
      0.1600481050932157, -1.033080375268656, 0.2980690372650345, 0.04406883291343043}},
    /* F.cross_entropy(X, L, ignore_index=0, label_smoothing=0.3) */
    {true, X, L, NULL, R_MEAN, 0, 0.3, 1, {1.7915648545700131},
     {0.028121710877589558, -0.23883935254969088, 0.044957515263740234, 0.1565728333632761,
      0.009187293045085, 0.0, 0.0, 0.0, 0.0, 0.0, 0.016483904615856318, 0.10113082912261062,
      0.0401517895783569, -0.00360672493200576, -0.154159798384818, 0.07464468941329401,
      0.011504480331271338, -0.11214004816599402, 0.03740490590814251,
      -0.011414027486713836}},
    /* F.cross_entropy(X, L, weight=W, ignore_index=4) */
    {true, X, L, W, R_MEAN, 4, 0.0, 1, {1.5985841885161811},
     {0.04124718075221962, -0.27329087361402077, 0.055677870226063055, 0.1513481428828081,
      0.02501767975293, -0.11044193183471936, 0.010790086421336042, 0.00535819834347472,
      0.014565093190346694, 0.07972855387956189, 0.0, 0.0, 0.0, 0.0, 0.0,
      0.1622480389942183, 0.05400768056789372, -0.32938293971313265, 0.0984084101282443,
      0.014718810022776281}},
    /* F.nll_loss(X, L, weight=W, ignore_index=4) */
    {false, X, L, W, R_MEAN, 4, 0.0, 1, {-0.6142857142857144},
     {0.0, -0.2857142857142857, 0.0, 0.0, 0.0, -0.14285714285714285, 0.0, 0.0, 0.0, 0.0,
      0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5714285714285714, 0.0, 0.0}},
    /* F.nll_loss(X, L, reduction='sum') */
    {false, X, L, NULL, R_SUM, -100, 0.0, 1, {-2.0},
     {0.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0,
      0.0, -1.0, 0.0, 0.0}},
    /* F.nll_loss(X, L, weight=W, reduction='none') */
    {false, X, L, W, R_NONE, -100, 0.0, 4, {1.0, -0.55, -0.15, -2.6},
     {0.0, -1.0, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.25, 0.0,
      0.0, -2.0, 0.0, 0.0}},
    /* F.cross_entropy(X3, L3, weight=W3, label_smoothing=0.25), X3 [2,3,2] */
    {true, X3, L3, W3, R_MEAN, -100, 0.25, 1, {1.305308626956824},
     {0.11290380154880832, -0.09587184623272632, 0.1247985535083888, 0.05938493317493137,
      -0.2377023550571971, 0.036486913057794994, 0.14134035023491232, 0.0,
      -0.21181612079060994, 0.0, 0.07047577055569773, 0.0}},
    /* F.cross_entropy(X3, L3, weight=W3, reduction='none') */
    {true, X3, L3, W3, R_NONE, -100, 0.0, 4, {2.3759531238612355, 1.5304945778340522, 1.6106321053667505, 0.0},
     {0.5073756406579543, -0.47657933053946255, 0.6848854772916568, 0.2853221642586297,
      -1.192261117949611, 0.19125716628083292, 0.6622124373887083, 0.0, -1.1061067089044796,
      0.0, 0.4438942715157719, 0.0}},
    /* F.nll_loss(X3, L3) */
    {false, X3, L3, NULL, R_MEAN, -100, 0.0, 1, {0.3333333333333333},
     {0.0, -0.3333333333333333, 0.0, 0.0, -0.3333333333333333, 0.0, 0.0, 0.0,
      -0.3333333333333333, 0.0, 0.0, 0.0}},
    /* F.cross_entropy(XS, LS): logits of 1e4 */
    {true, XS, LS, NULL, R_MEAN, -100, 0.0, 1, {10000.34657359028},
     {0.5, 0.0, -0.5, 0.0, -0.25, 0.25}},
    /* F.cross_entropy(XS, LS, reduction='sum', label_smoothing=0.1) */
    {true, XS, LS, NULL, R_SUM, -100, 0.1, 1, {19334.026480513894},
     {0.9666666666666667, -0.03333333333333333, -0.9333333333333333, -0.03333333333333333,
      -0.43333333333333335, 0.4666666666666667}},
};
/* clang-format on */

static const int64_t SH23[] = {2, 3};

/* A tensor of dtype dt from double values. */
static tg_tensor *mk(tg_ctx *c, tg_dtype dt, int nd, const int64_t *sh, const double *v,
                     bool grad)
{
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= sh[d];
    float f[64];
    ck_assert_int_le(n, 64);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    tg_tensor *t = tg_tensor_from(c, dt, nd, sh, dt == TG_F32 ? (const void *)f : (const void *)v);
    ck_assert_ptr_nonnull(t);
    if (grad) tg_set_requires_grad(t, true);
    return t;
}

/* t's values against want, within rtol relative to max(1, |want|). */
#define assert_near(t, want, n, rtol) assert_near_at((t), (want), (n), (rtol), #t, __LINE__)
static void assert_near_at(const tg_tensor *t, const double *want, int n, double rtol,
                           const char *what, int line)
{
    ck_assert_msg(t != NULL, "line %d: %s is NULL", line, what);
    ck_assert_msg(tg_numel(t) == n, "line %d: %s has %lld elements, want %d", line, what,
                  (long long)tg_numel(t), n);
    double got[64];
    tg_tensor *t64 = (tg_tensor *)t;
    for (int i = 0; i < n; i++) {
        if (tg_tensor_dtype(t) == TG_F32) {
            float f[64];
            ck_assert_int_eq(tg_copy_out(t64, f, (size_t)n * sizeof(float)), TG_OK);
            got[i] = f[i];
        } else {
            ck_assert_int_eq(tg_copy_out(t64, got, (size_t)n * sizeof(double)), TG_OK);
        }
    }
    for (int i = 0; i < n; i++) {
        double tol = rtol * fmax(1.0, fabs(want[i]));
        ck_assert_msg(got[i] == want[i] || fabs(got[i] - want[i]) <= tol,
                      "line %d: %s[%d] = %.17g, want %.17g (tol %.3g)", line, what, i, got[i],
                      want[i], tol);
    }
}

static tg_dtype loop_dtype(int i) { return i == 0 ? TG_F64 : TG_F32; }
static double loop_rtol(int i) { return i == 0 ? 1e-12 : 1e-5; }

static tg_tensor *apply_pw(tg_ctx *c, const pw_ref *r, tg_tensor *x, tg_tensor *t, tg_tensor *pw)
{
    switch (r->kind) {
    case K_MSE: return tg_mse_loss_ex(c, x, t, r->red);
    case K_L1: return tg_l1_loss(c, x, t, r->red);
    case K_SMOOTH_L1: return tg_smooth_l1_loss(c, x, t, r->param, r->red);
    case K_HUBER: return tg_huber_loss(c, x, t, r->param, r->red);
    case K_BCE: return tg_bce_loss(c, x, t, r->red);
    case K_BCE_LOGITS: return tg_bce_with_logits(c, x, t, r->flag ? pw : NULL, r->red);
    case K_KL: return tg_kl_div(c, x, t, r->red, r->flag);
    }
    return NULL;
}

/* Every pointwise case: forward values, d/dpred and d/dtarget. */
START_TEST(test_pointwise_vs_torch)
{
    tg_dtype dt = loop_dtype(_i);
    double rtol = loop_rtol(_i);
    for (size_t k = 0; k < sizeof pw_refs / sizeof pw_refs[0]; k++) {
        const pw_ref *r = &pw_refs[k];
        tg_ctx *c = tu_ctx();
        const double *xv = P, *tv = T;
        if (r->kind == K_BCE) xv = PB, tv = TB;
        if (r->kind == K_BCE_LOGITS) xv = Z, tv = TB;
        if (r->kind == K_KL) xv = LQ, tv = r->flag ? TKL : TK;
        tg_tensor *x = mk(c, dt, 2, SH23, xv, true);
        tg_tensor *t = mk(c, dt, 2, SH23, tv, r->has_dt);
        tg_tensor *pw = mk(c, dt, 1, (const int64_t[]){3}, PW, false);
        tg_tensor *y = apply_pw(c, r, x, t, pw);
        tu_assert_ok(c);
        ck_assert_int_eq(tg_ndim(y), r->red == TG_REDUCE_NONE ? 2 : 0);
        ck_assert_int_eq(tg_tensor_dtype(y), dt);
        assert_near(y, r->y, r->ny, rtol);
        tu_assert_status(tg_backward(c, r->ny == 1 ? y : tg_sum(c, y)), TG_OK);
        assert_near(tg_grad(x), r->dx, 6, rtol);
        if (r->has_dt) assert_near(tg_grad(t), r->dt, 6, rtol);
        tg_ctx_free(c);
    }
}
END_TEST

/* Every class-axis case: forward values and d/dinput. */
START_TEST(test_class_axis_vs_torch)
{
    tg_dtype dt = loop_dtype(_i);
    double rtol = loop_rtol(_i);
    for (size_t k = 0; k < sizeof cls_refs / sizeof cls_refs[0]; k++) {
        const cls_ref *r = &cls_refs[k];
        tg_ctx *c = tu_ctx();
        int64_t xs[3], ls[2];
        int nd;
        if (r->x == X) nd = 2, xs[0] = 4, xs[1] = 5;
        else if (r->x == X3) nd = 3, xs[0] = 2, xs[1] = 3, xs[2] = 2;
        else nd = 2, xs[0] = 2, xs[1] = 3;
        ls[0] = xs[0];
        ls[1] = nd == 3 ? xs[2] : 0;
        tg_tensor *x = mk(c, dt, nd, xs, r->x, true);
        tg_tensor *lab = tg_tensor_from(c, TG_I64, nd - 1, ls, r->lab);
        tg_tensor *w = r->w ? mk(c, dt, 1, &xs[1], r->w, false) : NULL;
        tg_tensor *y;
        if (r->ce) {
            tg_ce_opts o = tg_ce_defaults();
            o.reduction = r->red;
            o.ignore_index = r->ignore;
            o.label_smoothing = r->smoothing;
            y = tg_cross_entropy_ex(c, x, lab, w, &o);
        } else {
            y = tg_nll_loss(c, x, lab, w, r->red, r->ignore);
        }
        tu_assert_ok(c);
        ck_assert_int_eq(tg_ndim(y), r->red == TG_REDUCE_NONE ? nd - 1 : 0);
        assert_near(y, r->y, r->ny, rtol);
        tu_assert_status(tg_backward(c, r->ny == 1 ? y : tg_sum(c, y)), TG_OK);
        assert_near(tg_grad(x), r->dx, (int)tg_numel(x), rtol);
        tg_ctx_free(c);
    }
}
END_TEST

/* bce: p of exactly 0 and 1 give the clamped loss 100 * weight (finite);
 * the target gradient is that of the clamped loss (finite, where
 * PyTorch's is +-inf), and pos_weight of bce_with_logits gets a gradient. */
START_TEST(test_bce_clamp_and_extra_grads)
{
    tg_dtype dt = loop_dtype(_i);
    double rtol = loop_rtol(_i);
    tg_ctx *c = tu_ctx();
    tg_tensor *p = mk(c, dt, 2, SH23, PB, false);
    tg_tensor *t = mk(c, dt, 2, SH23, TB, true);
    tg_tensor *y = tg_bce_loss(c, p, t, TG_REDUCE_SUM);
    tu_assert_status(tg_backward(c, y), TG_OK);
    assert_near(tg_grad(t), DTB_BCE_SUM, 6, rtol);

    tg_tensor *z = mk(c, dt, 2, SH23, Z, false);
    tg_tensor *tb = mk(c, dt, 2, SH23, TB, false);
    tg_tensor *pw = mk(c, dt, 1, (const int64_t[]){3}, PW, true);
    y = tg_bce_with_logits(c, z, tb, pw, TG_REDUCE_MEAN);
    tu_assert_status(tg_backward(c, y), TG_OK);
    assert_near(tg_grad(pw), DPW_MEAN, 3, rtol);
    tg_ctx_free(c);
}
END_TEST

/* tg_mse_loss and tg_mse_loss_ex record one node type, and tg_cross_entropy
 * equals tg_cross_entropy_ex with the defaults. */
START_TEST(test_conveniences_agree)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *p = mk(c, TG_F64, 2, SH23, P, true), *t = mk(c, TG_F64, 2, SH23, T, false);
    tg_tensor *a = tg_mse_loss(c, p, t), *b = tg_mse_loss_ex(c, p, t, TG_REDUCE_MEAN);
    ck_assert_int_eq(tg_tensor_op(a), TG_OP_MSE_LOSS);
    ck_assert_int_eq(tg_tensor_op(b), TG_OP_MSE_LOSS);
    ck_assert(tg_item(a) == tg_item(b));

    tg_tensor *x = mk(c, TG_F64, 2, (const int64_t[]){4, 5}, X, true);
    tg_tensor *lab = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, L);
    double ce = tg_item(tg_cross_entropy(c, x, lab));
    double ex = tg_item(tg_cross_entropy_ex(c, x, lab, NULL, NULL));
    tu_assert_ok(c);
    ck_assert_close(ce, ex, 1e-15);
    ck_assert_close(ex, cls_refs[0].y[0], 1e-14);
    tg_ctx_free(c);
}
END_TEST

/* Class weights that require grad get a gradient (PyTorch refuses it; the
 * references differentiate the loss written out with torch ops, which
 * equals F.cross_entropy / F.nll_loss to 1e-14):
 *   lp = log_softmax(X, 1) (X itself for nll), keep = L != ignore,
 *   l = keep * ((1 - e) * -W[L] * lp[i, L] + e / C * -(lp * W).sum(1)),
 *   mean = l.sum() / (keep * W[L]).sum(); gradients of y.sum() in W. */
START_TEST(test_weight_grad)
{
    static const struct {
        bool ce;
        int64_t ignore;
        double e;
        tg_reduction red;
        double dw[5];
    } cases[] = {
        {true, 4, 0.1, TG_REDUCE_MEAN,
         {-0.05298963041148769, 0.3912883649401547, -0.20721354683876406, 0.026729372049128258,
          0.038157943477699685}},
        {true, -100, 0.2, TG_REDUCE_SUM,
         {1.4621703492380433, 2.8719241125542645, 0.9868070536865168, 0.3075964762002893,
          1.2854139133281186}},
        {false, 4, 0.0, TG_REDUCE_NONE, {-1.1, 1.0, -1.3, 0.0, 0.0}},
    };
    tg_dtype dt = loop_dtype(_i);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x = mk(c, dt, 2, (const int64_t[]){4, 5}, X, true);
        tg_tensor *w = mk(c, dt, 1, (const int64_t[]){5}, W, true);
        tg_tensor *lab = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, L);
        tg_ce_opts o = tg_ce_defaults();
        o.reduction = cases[k].red;
        o.ignore_index = cases[k].ignore;
        o.label_smoothing = cases[k].e;
        tg_tensor *y = cases[k].ce ? tg_cross_entropy_ex(c, x, lab, w, &o)
                                   : tg_nll_loss(c, x, lab, w, o.reduction, o.ignore_index);
        tu_assert_status(tg_backward(c, tg_sum(c, y)), TG_OK);
        assert_near(tg_grad(w), cases[k].dw, 5, loop_rtol(_i));
        tg_ctx_free(c);
    }
}
END_TEST

/* Every target ignored: the mean is NaN (0/0, as PyTorch) and the gradient
 * zero (as PyTorch's); sum is 0 and none all zeros. */
START_TEST(test_all_ignored)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = mk(c, TG_F64, 2, (const int64_t[]){4, 5}, X, true);
    const int64_t ign[] = {-100, -100, -100, -100};
    tg_tensor *lab = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, ign);
    tg_ce_opts o = tg_ce_defaults();
    o.label_smoothing = 0.1;
    tg_tensor *y = tg_cross_entropy_ex(c, x, lab, NULL, &o);
    tu_assert_ok(c);
    ck_assert(isnan(tg_item(y)));
    tu_assert_status(tg_backward(c, y), TG_OK);
    double zeros[20] = {0};
    assert_near(tg_grad(x), zeros, 20, 0.0);
    ck_assert(isnan(tg_item(tg_nll_loss(c, x, lab, NULL, TG_REDUCE_MEAN, -100))));
    ck_assert(tg_item(tg_nll_loss(c, x, lab, NULL, TG_REDUCE_SUM, -100)) == 0.0);
    o.reduction = TG_REDUCE_NONE;
    assert_near(tg_cross_entropy_ex(c, x, lab, NULL, &o), zeros, 4, 0.0);
    /* an empty batch: mean NaN as well */
    tg_tensor *x0 = tg_tensor_new(c, TG_F64, 2, (const int64_t[]){0, 5});
    tg_tensor *l0 = tg_tensor_new(c, TG_I64, 1, (const int64_t[]){0});
    ck_assert(isnan(tg_item(tg_cross_entropy_ex(c, x0, l0, NULL, NULL))));
    ck_assert(isnan(tg_item(tg_mse_loss_ex(c, x0, x0, TG_REDUCE_MEAN))));
    ck_assert(tg_item(tg_mse_loss_ex(c, x0, x0, TG_REDUCE_SUM)) == 0.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* Strided (transposed) inputs give the values of their contiguous copies. */
START_TEST(test_strided_inputs)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *xt = mk(c, TG_F64, 2, (const int64_t[]){5, 4}, X, false);
    tg_tensor *x = tg_transpose(c, xt, 0, 1);
    tg_tensor *xc = tg_contiguous(c, x);
    const int64_t lv[] = {1, 0, 4, 2};
    tg_tensor *lab = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, lv);
    tg_tensor *w = mk(c, TG_F64, 1, (const int64_t[]){5}, W, false);
    tg_ce_opts o = tg_ce_defaults();
    o.label_smoothing = 0.2;
    o.ignore_index = 0;
    ck_assert(tg_item(tg_cross_entropy_ex(c, x, lab, w, &o)) ==
              tg_item(tg_cross_entropy_ex(c, xc, lab, w, &o)));
    ck_assert(tg_item(tg_nll_loss(c, x, lab, w, TG_REDUCE_SUM, -100)) ==
              tg_item(tg_nll_loss(c, xc, lab, w, TG_REDUCE_SUM, -100)));
    tg_tensor *t = tg_scale(c, xc, 0.5);
    ck_assert(tg_item(tg_huber_loss(c, x, t, 0.3, TG_REDUCE_SUM)) ==
              tg_item(tg_huber_loss(c, xc, t, 0.3, TG_REDUCE_SUM)));
    ck_assert(tg_item(tg_bce_with_logits(c, x, tg_sigmoid(c, t), NULL, TG_REDUCE_MEAN)) ==
              tg_item(tg_bce_with_logits(c, xc, tg_sigmoid(c, t), NULL, TG_REDUCE_MEAN)));
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* Losses of tensors large enough to be split over threads are
 * bit-identical with 1 and 4 threads, values and gradients. */
static void big_losses(int threads, double out[8], double *grad_sum)
{
    tg_ctx *c = tu_ctx();
    ck_assert_int_eq(tg_ctx_set_threads(c, threads), TG_OK);
    tg_ctx_seed(c, 7);
    const int64_t sh[] = {600, 300};
    tg_tensor *x = tg_randn(c, TG_F32, 2, sh);
    tg_tensor *t = tg_rand(c, TG_F32, 2, sh);
    tg_set_requires_grad(x, true);
    int64_t lab[600];
    for (int i = 0; i < 600; i++) lab[i] = i % 7 == 3 ? -100 : (i * 37) % 300;
    tg_tensor *l = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){600}, lab);
    tg_tensor *w = tg_rand(c, TG_F32, 1, (const int64_t[]){300});
    tg_ce_opts o = tg_ce_defaults();
    o.label_smoothing = 0.1;
    tg_tensor *ys[8] = {
        tg_mse_loss_ex(c, x, t, TG_REDUCE_SUM),
        tg_smooth_l1_loss(c, x, t, 0.5, TG_REDUCE_MEAN),
        tg_bce_loss(c, t, tg_sigmoid(c, x), TG_REDUCE_MEAN),
        tg_bce_with_logits(c, x, t, NULL, TG_REDUCE_SUM),
        tg_kl_div(c, x, t, TG_REDUCE_BATCHMEAN, false),
        tg_cross_entropy_ex(c, x, l, w, &o),
        tg_nll_loss(c, x, l, w, TG_REDUCE_MEAN, -100),
        tg_l1_loss(c, x, t, TG_REDUCE_MEAN),
    };
    tu_assert_ok(c);
    tg_tensor *total = ys[0];
    for (int i = 0; i < 8; i++) {
        out[i] = tg_item(ys[i]);
        if (i) total = tg_add(c, total, ys[i]);
    }
    tu_assert_status(tg_backward(c, total), TG_OK);
    tg_tensor *gs = tg_sum(c, tg_mul(c, tg_grad(x), tg_grad(x)));
    *grad_sum = tg_item(gs);
    tu_assert_ok(c);
    tg_ctx_free(c);
}

START_TEST(test_threads_bit_identical)
{
    double a[8], b[8], ga, gb;
    big_losses(1, a, &ga);
    big_losses(4, b, &gb);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(&ga, &gb, sizeof ga) == 0);
    for (int i = 0; i < 8; i++) ck_assert(isfinite(a[i]));
}
END_TEST

/* Errors name the function, the shapes or the bad value. */
static void expect_err(tg_ctx *c, tg_tensor *y, tg_status want, const char *s1, const char *s2,
                       const char *s3, int line)
{
    ck_assert_msg(y == NULL, "line %d: expected NULL", line);
    ck_assert_msg(tg_ctx_status(c) == want, "line %d: status %s, want %s (%s)", line,
                  tg_status_str(tg_ctx_status(c)), tg_status_str(want), tg_ctx_errmsg(c));
    const char *m = tg_ctx_errmsg(c);
    const char *s[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(!s[i] || strstr(m, s[i]), "line %d: message '%s' lacks '%s'", line, m,
                      s[i]);
    tg_ctx_clear_error(c);
}
#define EXPECT_ERR(y, st, s1, s2, s3) expect_err(c, (y), (st), (s1), (s2), (s3), __LINE__)

START_TEST(test_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = mk(c, TG_F64, 2, SH23, P, false);
    tg_tensor *b = mk(c, TG_F64, 2, (const int64_t[]){3, 2}, T, false);
    tg_tensor *f = mk(c, TG_F32, 2, SH23, T, false);
    tg_tensor *v3 = mk(c, TG_F64, 1, (const int64_t[]){3}, PW, false);
    tg_tensor *v2 = mk(c, TG_F64, 1, (const int64_t[]){2}, PW, false);
    tg_tensor *bad = mk(c, TG_F64, 2, SH23, (const double[]){0.5, 0.2, 1.5, 0, 1, 0.3}, false);

    EXPECT_ERR(tg_l1_loss(c, a, b, TG_REDUCE_MEAN), TG_ERR_SHAPE, "tg_l1_loss", "[2,3]", "[3,2]");
    EXPECT_ERR(tg_mse_loss_ex(c, a, f, TG_REDUCE_SUM), TG_ERR_DTYPE, "tg_mse_loss_ex", NULL, NULL);
    EXPECT_ERR(tg_mse_loss_ex(c, a, NULL, TG_REDUCE_SUM), TG_ERR_INVALID, "tg_mse_loss_ex", NULL,
               NULL);
    EXPECT_ERR(tg_mse_loss_ex(c, a, a, TG_REDUCE_BATCHMEAN), TG_ERR_INVALID, "tg_mse_loss_ex",
               "batchmean", NULL);
    EXPECT_ERR(tg_l1_loss(c, a, a, (tg_reduction)42), TG_ERR_INVALID, "tg_l1_loss", "42", NULL);
    EXPECT_ERR(tg_smooth_l1_loss(c, a, a, -1.0, TG_REDUCE_MEAN), TG_ERR_INVALID,
               "tg_smooth_l1_loss", "beta", NULL);
    EXPECT_ERR(tg_huber_loss(c, a, a, 0.0, TG_REDUCE_MEAN), TG_ERR_INVALID, "tg_huber_loss",
               "delta", NULL);
    EXPECT_ERR(tg_huber_loss(c, a, a, NAN, TG_REDUCE_MEAN), TG_ERR_INVALID, "tg_huber_loss",
               "delta", NULL);
    EXPECT_ERR(tg_bce_loss(c, bad, a, TG_REDUCE_MEAN), TG_ERR_INVALID, "tg_bce_loss",
               "element 2", "outside [0, 1]");
    EXPECT_ERR(tg_bce_with_logits(c, a, a, v2, TG_REDUCE_MEAN), TG_ERR_SHAPE,
               "tg_bce_with_logits", "pos_weight [2]", NULL);
    ck_assert_ptr_nonnull(tg_bce_with_logits(c, a, a, v3, TG_REDUCE_MEAN));
    EXPECT_ERR(tg_kl_div(c, a, b, TG_REDUCE_BATCHMEAN, false), TG_ERR_SHAPE, "tg_kl_div", NULL,
               NULL);

    tg_tensor *x = mk(c, TG_F64, 2, (const int64_t[]){4, 5}, X, false);
    tg_tensor *w = mk(c, TG_F64, 1, (const int64_t[]){5}, W, false);
    tg_tensor *l_bad = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4},
                                      (const int64_t[]){1, 7, 0, 2});
    tg_tensor *l_neg = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4},
                                      (const int64_t[]){1, 0, -3, 2});
    tg_tensor *l_ok = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, L);
    tg_tensor *l_3 = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){3}, L);
    tg_tensor *l_f = mk(c, TG_F64, 1, (const int64_t[]){4}, W, false);
    EXPECT_ERR(tg_cross_entropy_ex(c, x, l_bad, NULL, NULL), TG_ERR_INVALID,
               "tg_cross_entropy_ex", "label 7", "row 1");
    EXPECT_ERR(tg_nll_loss(c, x, l_neg, NULL, TG_REDUCE_MEAN, -100), TG_ERR_INVALID,
               "tg_nll_loss", "label -3", "row 2");
    /* -3 is fine once it is the ignore_index */
    ck_assert_ptr_nonnull(tg_nll_loss(c, x, l_neg, NULL, TG_REDUCE_MEAN, -3));
    EXPECT_ERR(tg_cross_entropy_ex(c, x, l_3, NULL, NULL), TG_ERR_SHAPE, "tg_cross_entropy_ex",
               "[4,5]", "[3]");
    EXPECT_ERR(tg_nll_loss(c, x, l_f, NULL, TG_REDUCE_SUM, -100), TG_ERR_DTYPE, "tg_nll_loss",
               "i64", NULL);
    EXPECT_ERR(tg_cross_entropy_ex(c, x, l_ok, v3, NULL), TG_ERR_SHAPE, "tg_cross_entropy_ex",
               "weights [3]", NULL);
    EXPECT_ERR(tg_nll_loss(c, x, l_ok, w, TG_REDUCE_BATCHMEAN, -100), TG_ERR_INVALID,
               "tg_nll_loss", "reduction", NULL);
    tg_ce_opts o = tg_ce_defaults();
    o.label_smoothing = 1.5;
    EXPECT_ERR(tg_cross_entropy_ex(c, x, l_ok, w, &o), TG_ERR_INVALID, "tg_cross_entropy_ex",
               "label_smoothing", NULL);
    EXPECT_ERR(tg_cross_entropy_ex(c, v3, l_ok, NULL, NULL), TG_ERR_SHAPE,
               "tg_cross_entropy_ex", NULL, NULL);
    tg_tensor *xf = mk(c, TG_F32, 2, (const int64_t[]){4, 5}, X, false);
    EXPECT_ERR(tg_cross_entropy_ex(c, xf, l_ok, w, NULL), TG_ERR_DTYPE, "tg_cross_entropy_ex",
               NULL, NULL);
    /* sticky: with an error held, a valid call returns NULL too */
    tg_l1_loss(c, a, b, TG_REDUCE_MEAN);
    ck_assert_ptr_null(tg_cross_entropy_ex(c, x, l_ok, w, NULL));
    ck_assert_int_eq(tg_ctx_status(c), TG_ERR_SHAPE);
    tg_ctx_free(c);
}
END_TEST

/* A label changed in place to an invalid value after the forward is caught
 * by the backward, not read out of bounds. */
START_TEST(test_label_changed_before_backward)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = mk(c, TG_F64, 2, (const int64_t[]){4, 5}, X, true);
    tg_tensor *lab = tg_tensor_from(c, TG_I64, 1, (const int64_t[]){4}, L);
    tg_tensor *y = tg_cross_entropy_ex(c, x, lab, NULL, NULL);
    tu_assert_ok(c);
    ((int64_t *)tg_data(lab))[3] = 99;
    ck_assert_int_ne(tg_backward(c, y), TG_OK);
    ck_assert_ptr_null(tg_grad(x));
    tg_ctx_free(c);
}
END_TEST

Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tu_tcase("torch");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_pointwise_vs_torch, 0, 2);
    tcase_add_loop_test(tc, test_class_axis_vs_torch, 0, 2);
    tcase_add_loop_test(tc, test_bce_clamp_and_extra_grads, 0, 2);
    tcase_add_loop_test(tc, test_weight_grad, 0, 2);
    tcase_add_test(tc, test_conveniences_agree);
    tcase_add_test(tc, test_all_ignored);
    tcase_add_test(tc, test_strided_inputs);
    suite_add_tcase(s, tc);

    tc = tu_tcase("threads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_threads_bit_identical);
    suite_add_tcase(s, tc);

    tc = tu_tcase("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_label_changed_before_backward);
    suite_add_tcase(s, tc);
    return s;
}
