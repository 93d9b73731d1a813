/*
 * fake libnvidia-ml.so.1 for Navarch's tests.
 *
 * Exports real NVML symbol names and C signatures (declared in fake_nvml.h, written from
 * NVML's published signatures) so the agent's bun:ffi binding loads it through exactly
 * the code path it uses for the real driver. Built by build.sh in variants:
 *   build/libnvidia-ml.so.1        FAKE_NVML_VERSION=580 (everything below)
 *   build/r535/libnvidia-ml.so.1   FAKE_NVML_VERSION=535 (no symbol that appeared after R535)
 *   build/r470/libnvidia-ml.so.1   FAKE_NVML_VERSION=470 (no ClocksEventReasons, no fabric info)
 *
 * STATE. All state is process-global (a Worker sees what the main thread injects). It is set
 * to built-in defaults (4 x "NVIDIA H100 80GB HBM3", healthy) on the first call of any
 * function; then the file named by env FAKE_NVML_STATE, if set, is applied. fakeNvmlReset()
 * (or the `reset` command) restores the defaults and applies that file again. The state file
 * is a list of the commands below, one per line; '#' starts a comment.
 *
 * CONTROL. Commands come from (a) the state file, (b) fakeNvmlCommand("...") and the typed
 * fakeNvml* exports (bind them with a separate dlopen of the same path), (c) the FIFO named by
 * env FAKE_NVML_CONTROL: on the first call a background pthread creates it (mkfifo) if it does
 * not exist and executes every line written to it, e.g. `echo 'xid 0 79' > "$FAKE_NVML_CONTROL"`.
 * Errors are printed to stderr as "fake-nvml: ...". fakeNvmlLastError() gives the last one of
 * the calling thread.
 *
 * COMMAND SYNTAX. DEV is a device index (physical, 0-based) or '*' for every device. Numbers
 * accept 0x hex. Text with spaces may be double-quoted.
 *   count N                         number of GPUs (1..16)
 *   driver VERSION | nvmlversion VERSION | cuda N (e.g. 12040)
 *   init RET                        nvmlInit* returns RET (18 LIB_RM_VERSION_MISMATCH, 9 ...); 0 clears
 *   fabricversion N                 newest nvmlGpuFabricInfo version accepted (3; 2 imitates R550)
 *   name DEV TEXT | uuid DEV TEXT | serial DEV TEXT
 *   pci DEV BUSID                   e.g. 00000000:18:00.0
 *   memory DEV TOTAL USED [RESERVED]   bytes
 *   temp DEV C | margin DEV C (default: gpumax - temp)
 *   threshold DEV shutdown|slowdown|memmax|gpumax|N C    (C = -1: NOT_SUPPORTED)
 *   power DEV USAGE_MW [LIMIT_MW]   | util DEV GPU% MEM%
 *   eccmode DEV on|off              | ecc DEV SBE_VOL DBE_VOL [SBE_AGG DBE_AGG]
 *   remap DEV CORR UNC PENDING FAILED | remap DEV unsupported
 *   retired DEV SBE DBE PENDING     (makes retired pages supported; default: NOT_SUPPORTED, Hopper)
 *   retired DEV unsupported
 *   clocks DEV MASK                 current clocks event (throttle) reason bits
 *   nvlinks DEV N                   number of links (0: NVLink NOT_SUPPORTED)
 *   nvlink DEV LINK up|down
 *   nvlinkerr DEV LINK replay|recovery|crcflit|crcdata|eccdata VALUE
 *   pcie DEV CURGEN CURWIDTH MAXGEN MAXWIDTH [GPUMAXGEN] | replay DEV N
 *   persistence DEV on|off
 *   procs DEV N [MEM]               N compute processes (pids 4000+), MEM bytes of GPU memory each
 *   fabric DEV STATE [STATUS [HEALTHMASK [SUMMARY [CLIQUE]]]] | fabric DEV unsupported
 *   events DEV MASK                 supported event types
 *   recovery DEV N                  field 230 GET_GPU_RECOVERY_ACTION (R570+)
 *   field DEV ID VALUE [SCOPE]      any field value (VALUE containing '.' is a double)
 *   fieldret DEV ID RET [SCOPE]     per-field nvmlReturn in nvmlDeviceGetFieldValues
 *   lost DEV on|off [hide]          GPU_IS_LOST (15) on every call for DEV; `hide` also drops it
 *                                   from nvmlDeviceGetCount; event sets with DEV registered get
 *                                   one GPU_IS_LOST from nvmlEventSetWait
 *   resetrequired DEV on|off        RESET_REQUIRED (16) on every call for DEV
 *   ret DEV|* FN RET                FN returns RET (for DEV, or for every call with '*'); RET 0 clears
 *   hang FN|* MS                    FN (or every NVML function) sleeps MS ms before running;
 *                                   -1 = until released; 0 = clear and release sleeping calls
 *   xid DEV XID                     event 0x8 (XidCriticalError) with data XID
 *   event DEV TYPE DATA             any event type (e.g. `event 0 0x10 0`)
 *   eventret DEV RET                next nvmlEventSetWait on sets with DEV registered returns RET
 *   reset                           defaults + FAKE_NVML_STATE again
 * Events are queued per event set (only sets with the device registered for that type get
 * them) and each is delivered exactly once; nvmlEventSetWait_v2 blocks on a condition variable.
 */
#define _GNU_SOURCE
#include "fake_nvml.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

#define MAX_DEV 16
#define MAX_LINKS 64
#define MAX_FIELDS 64
#define MAX_SETS 32
#define QCAP 1024
#define SCOPE_ANY 0xFFFFFFFFu

/* Every NVML function of the fake, for call counts, hangs and return overrides. */
#define FAKE_FUNCS(X)                                                                            \
  X(nvmlInit_v2) X(nvmlInit) X(nvmlInitWithFlags) X(nvmlShutdown) X(nvmlSystemGetDriverVersion)     \
  X(nvmlSystemGetNVMLVersion) X(nvmlSystemGetCudaDriverVersion) X(nvmlSystemGetCudaDriverVersion_v2) \
  X(nvmlDeviceGetCount_v2) X(nvmlDeviceGetCount) X(nvmlDeviceGetHandleByIndex_v2)                   \
  X(nvmlDeviceGetHandleByIndex) X(nvmlDeviceGetHandleByUUID) X(nvmlDeviceGetHandleByPciBusId_v2)    \
  X(nvmlDeviceGetUUID) X(nvmlDeviceGetName) X(nvmlDeviceGetSerial) X(nvmlDeviceGetPciInfo_v3)       \
  X(nvmlDeviceGetPciInfo_v2) X(nvmlDeviceGetPciInfo) X(nvmlDeviceGetIndex) X(nvmlDeviceGetMinorNumber) \
  X(nvmlDeviceGetMemoryInfo) X(nvmlDeviceGetMemoryInfo_v2) X(nvmlDeviceGetTemperature)              \
  X(nvmlDeviceGetTemperatureThreshold) X(nvmlDeviceGetTemperatureV) X(nvmlDeviceGetMarginTemperature) \
  X(nvmlDeviceGetPowerUsage) X(nvmlDeviceGetEnforcedPowerLimit) X(nvmlDeviceGetPowerManagementLimit) \
  X(nvmlDeviceGetUtilizationRates) X(nvmlDeviceGetEccMode) X(nvmlDeviceGetTotalEccErrors)          \
  X(nvmlDeviceGetMemoryErrorCounter) X(nvmlDeviceGetRemappedRows) X(nvmlDeviceGetRetiredPages_v2)  \
  X(nvmlDeviceGetRetiredPages) X(nvmlDeviceGetRetiredPagesPendingStatus)                           \
  X(nvmlDeviceGetCurrentClocksThrottleReasons) X(nvmlDeviceGetCurrentClocksEventReasons)           \
  X(nvmlDeviceGetSupportedClocksEventReasons) X(nvmlDeviceGetNvLinkState)                          \
  X(nvmlDeviceGetNvLinkErrorCounter) X(nvmlDeviceGetCurrPcieLinkGeneration)                        \
  X(nvmlDeviceGetCurrPcieLinkWidth) X(nvmlDeviceGetMaxPcieLinkGeneration)                          \
  X(nvmlDeviceGetMaxPcieLinkWidth) X(nvmlDeviceGetGpuMaxPcieLinkGeneration)                        \
  X(nvmlDeviceGetPcieReplayCounter) X(nvmlDeviceGetPcieSpeed) X(nvmlDeviceGetPersistenceMode)      \
  X(nvmlDeviceGetGpuFabricInfo) X(nvmlDeviceGetGpuFabricInfoV) X(nvmlDeviceGetFieldValues)         \
  X(nvmlEventSetCreate) X(nvmlDeviceGetSupportedEventTypes) X(nvmlDeviceRegisterEvents)            \
  X(nvmlEventSetWait_v2) X(nvmlEventSetWait) X(nvmlEventSetFree)                                   \
  X(nvmlDeviceGetComputeRunningProcesses) X(nvmlDeviceGetComputeRunningProcesses_v2)               \
  X(nvmlDeviceGetComputeRunningProcesses_v3)

#define AS_ENUM(n) FN_##n,
#define AS_NAME(n) #n,
enum { FAKE_FUNCS(AS_ENUM) FN_COUNT };
static const char *const fn_names[FN_COUNT] = {FAKE_FUNCS(AS_NAME)};

typedef struct {
  unsigned int id, scope;
  int type;
  nvmlReturn_t ret;
  nvmlValue_t value;
} fake_field;

struct fakeNvmlDevice_st {
  char name[128], uuid[128], serial[64], busId[32]; /* larger than NVML's buffers, to test INSUFFICIENT_SIZE */
  unsigned int domain, bus, devno, pciDeviceId, pciSubSystemId;
  unsigned long long memTotal, memUsed, memReserved;
  unsigned int temp;
  int thresh[8];
  int marginSet, margin;
  unsigned int powerMw, limitMw;
  unsigned int utilGpu, utilMem;
  int eccEnabled;
  unsigned long long ecc[2][2]; /* [errorType: 0 corrected, 1 uncorrected][counter: 0 volatile, 1 aggregate] */
  int remapSupported;
  unsigned int remapCorr, remapUnc, remapPending, remapFailed;
  int retiredSupported;
  unsigned int retiredSbe, retiredDbe, retiredPending;
  unsigned long long clockReasons, supportedClockReasons;
  unsigned int nvlinks;
  unsigned char linkUp[MAX_LINKS];
  unsigned long long linkErr[MAX_LINKS][5];
  unsigned int pcieCurGen, pcieCurWidth, pcieMaxGen, pcieMaxWidth, pcieGpuMaxGen, pcieReplay;
  int persistence;
  int fabricSupported;
  unsigned char fabricState, fabricSummary, clusterUuid[16];
  nvmlReturn_t fabricStatus;
  unsigned int fabricClique, fabricHealthMask;
  unsigned long long supportedEvents;
  unsigned int recoveryAction;
  unsigned int procs;
  unsigned long long procMem;
  fake_field fields[MAX_FIELDS];
  int nfields;
  int lost, hidden, resetRequired;
};

typedef struct {
  unsigned int dev;
  unsigned long long type, data;
  nvmlReturn_t ret; /* != 0: nvmlEventSetWait returns this instead of an event */
} fake_event;

struct fakeNvmlEventSet_st {
  int alive;
  unsigned long long mask[MAX_DEV];
  fake_event q[QCAP];
  unsigned int head, len;
  unsigned long long dropped;
  pthread_cond_t cond;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hang_cond;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static struct {
  int initCount;
  nvmlReturn_t initRet;
  char driver[128], nvmlVersion[128];
  int cuda;
  unsigned int count;
  int fabricMaxVersion;
  struct fakeNvmlDevice_st devs[MAX_DEV];
  nvmlReturn_t ret[MAX_DEV + 1][FN_COUNT]; /* [MAX_DEV]: every call */
  int hang[FN_COUNT];
  int hangAll;
  unsigned int hangGen;
  long long calls[FN_COUNT];
  struct fakeNvmlEventSet_st sets[MAX_SETS];
} g;

static __thread char last_error[256];

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

static void set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  fprintf(stderr, "fake-nvml: %s\n", last_error);
}

static void deadline_after(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec += 1;
    ts->tv_nsec -= 1000000000L;
  }
}

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int fn_index(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < FN_COUNT; i++)
    if (strcmp(fn_names[i], name) == 0) return i;
  return -1;
}

static int put_string(char *dst, unsigned int len, const char *src) {
  size_t n = strlen(src);
  if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
  if (len < n + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(dst, src, n + 1);
  return NVML_SUCCESS;
}

static unsigned long long version_events(void) {
  unsigned long long m = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80 | 0x100;
#if FAKE_NVML_VERSION >= 560
  m |= 0x200 | 0x400 | 0x800 | 0x1000 | 0x2000;
#endif
#if FAKE_NVML_VERSION >= 570
  m |= 0x4000 | 0x8000;
#endif
  return m;
}

static const unsigned char DEFAULT_BUSES[MAX_DEV] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb,
                                                     0x19, 0x2b, 0x3b, 0x5e, 0x9b, 0xac, 0xbb, 0xdc};

static void parse_bus_id(struct fakeNvmlDevice_st *d) {
  unsigned int dom = 0, bus = 0, dv = 0, fn = 0;
  if (sscanf(d->busId, "%x:%x:%x.%x", &dom, &bus, &dv, &fn) >= 3) {
    d->domain = dom;
    d->bus = bus;
    d->devno = dv;
  }
}

static void device_defaults(unsigned int i) {
  struct fakeNvmlDevice_st *d = &g.devs[i];
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "NVIDIA H100 80GB HBM3");
  snprintf(d->uuid, sizeof d->uuid, "GPU-8f0a1c2d-%04x-4e6f-9a7b-fa4e00000%03x", 0xbe00 + i, i);
  snprintf(d->serial, sizeof d->serial, "165022000%04u", 1000 + i);
  snprintf(d->busId, sizeof d->busId, "00000000:%02X:00.0", DEFAULT_BUSES[i]);
  parse_bus_id(d);
  d->pciDeviceId = 0x233010DE;
  d->pciSubSystemId = 0x16C110DE;
  d->memTotal = 85520809984ULL; /* ~79.6 GiB, as an H100 80GB reports */
  d->memReserved = 553648128ULL;
  d->memUsed = 0;
  d->temp = 34;
  d->thresh[0] = 92; /* shutdown */
  d->thresh[1] = 89; /* slowdown */
  d->thresh[2] = 95; /* mem max */
  d->thresh[3] = 87; /* gpu max */
  for (int t = 4; t < 8; t++) d->thresh[t] = -1;
  d->powerMw = 71000;
  d->limitMw = 700000;
  d->utilGpu = 0;
  d->utilMem = 0;
  d->eccEnabled = 1;
  d->remapSupported = 1;
  d->retiredSupported = 0;
  d->clockReasons = 0x1; /* GpuIdle */
  d->supportedClockReasons = 0x1ff;
  d->nvlinks = 18;
  for (int l = 0; l < MAX_LINKS; l++) d->linkUp[l] = 1;
  d->pcieCurGen = 5;
  d->pcieCurWidth = 16;
  d->pcieMaxGen = 5;
  d->pcieMaxWidth = 16;
  d->pcieGpuMaxGen = 5;
  d->persistence = 1;
  d->fabricSupported = 1;
  d->fabricState = 3;   /* COMPLETED */
  d->fabricStatus = 0;  /* SUCCESS */
  d->fabricSummary = 1; /* HEALTHY */
  d->fabricClique = 1;
  /* 2-bit fields, 2 = FALSE: degraded bw, route recovery, route unhealthy, access timeout;
     incorrect configuration = 1 (NONE); partition assigned = 1 (TRUE) */
  d->fabricHealthMask = 0x2 | (0x2 << 2) | (0x2 << 4) | (0x2 << 6) | (0x1 << 8) | (0x1 << 12);
  for (int b = 0; b < 16; b++) d->clusterUuid[b] = (unsigned char)(0xc0 + b);
  d->supportedEvents = version_events();
  d->recoveryAction = 0;
}

static void apply_defaults_locked(void) {
  g.initRet = 0;
#if FAKE_NVML_VERSION >= 580
  snprintf(g.driver, sizeof g.driver, "580.95.05");
  snprintf(g.nvmlVersion, sizeof g.nvmlVersion, "13.580.95.05");
  g.cuda = 13000;
#elif FAKE_NVML_VERSION >= 535
  snprintf(g.driver, sizeof g.driver, "535.261.03");
  snprintf(g.nvmlVersion, sizeof g.nvmlVersion, "12.535.261.03");
  g.cuda = 12020;
#else
  snprintf(g.driver, sizeof g.driver, "470.256.02");
  snprintf(g.nvmlVersion, sizeof g.nvmlVersion, "11.470.256.02");
  g.cuda = 11040;
#endif
  g.count = 4;
  g.fabricMaxVersion = FAKE_NVML_VERSION >= 580 ? 3 : 2;
  for (unsigned int i = 0; i < MAX_DEV; i++) device_defaults(i);
  memset(g.ret, 0, sizeof g.ret);
  memset(g.hang, 0, sizeof g.hang);
  g.hangAll = 0;
  g.hangGen++;
  pthread_cond_broadcast(&g_hang_cond);
  memset(g.calls, 0, sizeof g.calls);
  for (int s = 0; s < MAX_SETS; s++) {
    g.sets[s].head = g.sets[s].len = 0;
    g.sets[s].dropped = 0;
  }
}

static void *control_thread(void *arg);
static __thread int t_in_init;
static __thread int t_loading;

static void load_state_file(void) {
  const char *path = getenv("FAKE_NVML_STATE");
  if (path && *path) fakeNvmlLoadState(path);
}

static void init_once(void) {
  t_in_init = 1;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&g_hang_cond, &attr);
  for (int s = 0; s < MAX_SETS; s++) pthread_cond_init(&g.sets[s].cond, &attr);
  pthread_condattr_destroy(&attr);
  pthread_mutex_lock(&g_lock);
  apply_defaults_locked();
  pthread_mutex_unlock(&g_lock);
  load_state_file();
  const char *ctl = getenv("FAKE_NVML_CONTROL");
  if (ctl && *ctl) {
    pthread_t t;
    char *path = strdup(ctl);
    if (path && pthread_create(&t, NULL, control_thread, path) == 0)
      pthread_detach(t);
    else
      set_error("cannot start the control thread for %s", ctl);
  }
  t_in_init = 0;
}

static void ensure_init(void) {
  if (!t_in_init) pthread_once(&g_once, init_once);
}

/* Sleeps while a hang is configured for fn; called without the lock. */
static void do_hang(int fn) {
  pthread_mutex_lock(&g_lock);
  int ms = g.hang[fn] ? g.hang[fn] : g.hangAll;
  if (ms != 0) {
    unsigned int gen = g.hangGen;
    struct timespec until;
    if (ms > 0) deadline_after(&until, ms);
    while (g.hangGen == gen) {
      if (ms < 0)
        pthread_cond_wait(&g_hang_cond, &g_lock);
      else if (pthread_cond_timedwait(&g_hang_cond, &g_lock, &until) == ETIMEDOUT)
        break;
    }
  }
  pthread_mutex_unlock(&g_lock);
}

/* Common entry of non-device functions. On success returns with g_lock held. */
static nvmlReturn_t sys_begin(int fn, int needInit) {
  ensure_init();
  __atomic_fetch_add(&g.calls[fn], 1, __ATOMIC_RELAXED);
  do_hang(fn);
  pthread_mutex_lock(&g_lock);
  nvmlReturn_t r = g.ret[MAX_DEV][fn];
  if (r == 0 && needInit && g.initCount == 0) r = NVML_ERROR_UNINITIALIZED;
  if (r != 0) pthread_mutex_unlock(&g_lock);
  return r;
}

static int dev_index(nvmlDevice_t h) {
  struct fakeNvmlDevice_st *d = (struct fakeNvmlDevice_st *)h;
  if (d < &g.devs[0] || d >= &g.devs[MAX_DEV]) return -1;
  int i = (int)(d - &g.devs[0]);
  if ((unsigned int)i >= g.count) return -1;
  return i;
}

/* Common entry of device functions. On success returns with g_lock held and *out set. */
static nvmlReturn_t dev_begin(int fn, nvmlDevice_t h, struct fakeNvmlDevice_st **out) {
  ensure_init();
  __atomic_fetch_add(&g.calls[fn], 1, __ATOMIC_RELAXED);
  do_hang(fn);
  pthread_mutex_lock(&g_lock);
  nvmlReturn_t r = NVML_SUCCESS;
  int i = -1;
  if (g.initCount == 0)
    r = NVML_ERROR_UNINITIALIZED;
  else if ((i = dev_index(h)) < 0)
    r = NVML_ERROR_INVALID_ARGUMENT;
  else if (g.devs[i].lost)
    r = NVML_ERROR_GPU_IS_LOST;
  else if (g.devs[i].resetRequired)
    r = NVML_ERROR_RESET_REQUIRED;
  else if (g.ret[i][fn])
    r = g.ret[i][fn];
  else if (g.ret[MAX_DEV][fn])
    r = g.ret[MAX_DEV][fn];
  if (r != NVML_SUCCESS) {
    pthread_mutex_unlock(&g_lock);
    return r;
  }
  *out = &g.devs[i];
  return NVML_SUCCESS;
}

#define SYS_BEGIN(fn, needInit)                                      \
  do {                                                               \
    nvmlReturn_t _e = sys_begin(FN_##fn, needInit);                  \
    if (_e != NVML_SUCCESS) return _e;                               \
  } while (0)
#define DEV_BEGIN(fn, h)                                             \
  struct fakeNvmlDevice_st *d = NULL;                                \
  do {                                                               \
    nvmlReturn_t _e = dev_begin(FN_##fn, (h), &d);                   \
    if (_e != NVML_SUCCESS) return _e;                               \
  } while (0)
#define RETURN(x)                                                    \
  do {                                                               \
    nvmlReturn_t _rv = (x);                                          \
    pthread_mutex_unlock(&g_lock);                                   \
    return _rv;                                                      \
  } while (0)

/* ------------------------------------------------------------------------------------------ */
/* init, system                                                                               */

static nvmlReturn_t do_init(int fn) {
  nvmlReturn_t e = sys_begin(fn, 0);
  if (e != NVML_SUCCESS) return e;
  if (g.initRet != 0) RETURN(g.initRet);
  g.initCount++;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlInit_v2(void) { return do_init(FN_nvmlInit_v2); }
API nvmlReturn_t nvmlInit(void) { return do_init(FN_nvmlInit); }
API nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
  (void)flags;
  return do_init(FN_nvmlInitWithFlags);
}

API nvmlReturn_t nvmlShutdown(void) {
  SYS_BEGIN(nvmlShutdown, 1);
  g.initCount--;
  RETURN(NVML_SUCCESS);
}

API const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt request issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 22: return "The requested vgpu operation is not available on target device, because ECC is enabled";
    case 23: return "Ran out of critical resources, other than memory";
    case 24: return "The requested frequency is not supported";
    case 25: return "The provided version is invalid/unsupported";
    case 26: return "The requested functionality has been deprecated";
    case 27: return "The system is not ready for the request";
    case 28: return "The GPU was not found";
    case 29: return "The resource is in an invalid state";
    default: return "Unknown Error";
  }
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
  SYS_BEGIN(nvmlSystemGetDriverVersion, 1);
  RETURN(put_string(version, length, g.driver));
}

API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
  SYS_BEGIN(nvmlSystemGetNVMLVersion, 0);
  RETURN(put_string(version, length, g.nvmlVersion));
}

static nvmlReturn_t cuda_version(int fn, int *v) {
  nvmlReturn_t e = sys_begin(fn, 0);
  if (e != NVML_SUCCESS) return e;
  if (!v) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *v = g.cuda;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return cuda_version(FN_nvmlSystemGetCudaDriverVersion, v); }
API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return cuda_version(FN_nvmlSystemGetCudaDriverVersion_v2, v); }

/* ------------------------------------------------------------------------------------------ */
/* enumeration and identity                                                                   */

static unsigned int visible_count_locked(void) {
  unsigned int n = 0;
  for (unsigned int i = 0; i < g.count; i++)
    if (!g.devs[i].hidden) n++;
  return n;
}

static nvmlReturn_t get_count(int fn, unsigned int *count) {
  nvmlReturn_t e = sys_begin(fn, 1);
  if (e != NVML_SUCCESS) return e;
  if (!count) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *count = visible_count_locked();
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *c) { return get_count(FN_nvmlDeviceGetCount_v2, c); }
API nvmlReturn_t nvmlDeviceGetCount(unsigned int *c) { return get_count(FN_nvmlDeviceGetCount, c); }

static nvmlReturn_t handle_by_index(int fn, unsigned int index, nvmlDevice_t *device) {
  nvmlReturn_t e = sys_begin(fn, 1);
  if (e != NVML_SUCCESS) return e;
  if (!device) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  unsigned int seen = 0;
  for (unsigned int i = 0; i < g.count; i++) {
    if (g.devs[i].hidden) continue;
    if (seen++ == index) {
      if (g.ret[i][fn]) RETURN(g.ret[i][fn]);
      *device = (nvmlDevice_t)&g.devs[i];
      RETURN(NVML_SUCCESS);
    }
  }
  RETURN(NVML_ERROR_INVALID_ARGUMENT);
}
API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
  return handle_by_index(FN_nvmlDeviceGetHandleByIndex_v2, i, d);
}
API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) {
  return handle_by_index(FN_nvmlDeviceGetHandleByIndex, i, d);
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
  SYS_BEGIN(nvmlDeviceGetHandleByUUID, 1);
  if (!uuid || !device) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  for (unsigned int i = 0; i < g.count; i++) {
    if (!g.devs[i].hidden && strcmp(g.devs[i].uuid, uuid) == 0) {
      *device = (nvmlDevice_t)&g.devs[i];
      RETURN(g.devs[i].lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS);
    }
  }
  RETURN(NVML_ERROR_NOT_FOUND);
}

API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *busId, nvmlDevice_t *device) {
  SYS_BEGIN(nvmlDeviceGetHandleByPciBusId_v2, 1);
  if (!busId || !device) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  unsigned int dom = 0, bus = 0, dv = 0;
  int n = sscanf(busId, "%x:%x:%x", &dom, &bus, &dv);
  if (n != 3) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  for (unsigned int i = 0; i < g.count; i++) {
    struct fakeNvmlDevice_st *d = &g.devs[i];
    if (!d->hidden && d->domain == dom && d->bus == bus && d->devno == dv) {
      *device = (nvmlDevice_t)d;
      RETURN(d->lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS);
    }
  }
  RETURN(NVML_ERROR_NOT_FOUND);
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *uuid, unsigned int length) {
  DEV_BEGIN(nvmlDeviceGetUUID, h);
  RETURN(put_string(uuid, length, d->uuid));
}
API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *name, unsigned int length) {
  DEV_BEGIN(nvmlDeviceGetName, h);
  RETURN(put_string(name, length, d->name));
}
API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t h, char *serial, unsigned int length) {
  DEV_BEGIN(nvmlDeviceGetSerial, h);
  RETURN(put_string(serial, length, d->serial));
}

static void fill_pci(const struct fakeNvmlDevice_st *d, nvmlPciInfo_t *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "%04X:%02X:%02X.0", d->domain & 0xffff, d->bus, d->devno);
  p->domain = d->domain;
  p->bus = d->bus;
  p->device = d->devno;
  p->pciDeviceId = d->pciDeviceId;
  p->pciSubSystemId = d->pciSubSystemId;
  snprintf(p->busId, sizeof p->busId, "%s", d->busId);
}
#define PCI_FN(fname)                                                 \
  API nvmlReturn_t fname(nvmlDevice_t h, nvmlPciInfo_t *pci) {        \
    DEV_BEGIN(fname, h);                                              \
    if (!pci) RETURN(NVML_ERROR_INVALID_ARGUMENT);                    \
    fill_pci(d, pci);                                                 \
    RETURN(NVML_SUCCESS);                                             \
  }
PCI_FN(nvmlDeviceGetPciInfo_v3)
PCI_FN(nvmlDeviceGetPciInfo_v2)
PCI_FN(nvmlDeviceGetPciInfo)

API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned int *index) {
  DEV_BEGIN(nvmlDeviceGetIndex, h);
  if (!index) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  unsigned int n = 0;
  for (struct fakeNvmlDevice_st *p = &g.devs[0]; p < d; p++)
    if (!p->hidden) n++;
  *index = n;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t h, unsigned int *minor) {
  DEV_BEGIN(nvmlDeviceGetMinorNumber, h);
  if (!minor) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *minor = (unsigned int)(d - &g.devs[0]);
  RETURN(NVML_SUCCESS);
}

/* ------------------------------------------------------------------------------------------ */
/* memory, temperature, power, utilisation                                                    */

API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *m) {
  DEV_BEGIN(nvmlDeviceGetMemoryInfo, h);
  if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  m->total = d->memTotal;
  m->used = d->memUsed + d->memReserved;
  m->free = d->memTotal - m->used;
  RETURN(NVML_SUCCESS);
}

#if FAKE_NVML_VERSION >= 515
API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t h, nvmlMemory_v2_t *m) {
  DEV_BEGIN(nvmlDeviceGetMemoryInfo_v2, h);
  if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (m->version != nvmlMemory_v2) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  m->total = d->memTotal;
  m->reserved = d->memReserved;
  m->used = d->memUsed;
  m->free = d->memTotal - d->memUsed - d->memReserved;
  RETURN(NVML_SUCCESS);
}
#endif

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t h, int sensor, unsigned int *t) {
  DEV_BEGIN(nvmlDeviceGetTemperature, h);
  if (!t || sensor != 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *t = d->temp;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t h, int type, unsigned int *t) {
  DEV_BEGIN(nvmlDeviceGetTemperatureThreshold, h);
  if (!t || type < 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (type >= 8 || d->thresh[type] < 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
  *t = (unsigned int)d->thresh[type];
  RETURN(NVML_SUCCESS);
}

#if FAKE_NVML_VERSION >= 570
API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t h, nvmlTemperature_v1_t *t) {
  DEV_BEGIN(nvmlDeviceGetTemperatureV, h);
  if (!t) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (t->version != nvmlTemperature_v1) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  if (t->sensorType != 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  t->temperature = (int)d->temp;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMarginTemperature(nvmlDevice_t h, nvmlMarginTemperature_v1_t *m) {
  DEV_BEGIN(nvmlDeviceGetMarginTemperature, h);
  if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (m->version != nvmlMarginTemperature_v1) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  m->marginTemperature = d->marginSet ? d->margin : d->thresh[3] - (int)d->temp;
  RETURN(NVML_SUCCESS);
}
#endif

API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t h, unsigned int *mw) {
  DEV_BEGIN(nvmlDeviceGetPowerUsage, h);
  if (!mw) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *mw = d->powerMw;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t h, unsigned int *mw) {
  DEV_BEGIN(nvmlDeviceGetEnforcedPowerLimit, h);
  if (!mw) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *mw = d->limitMw;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t h, unsigned int *mw) {
  DEV_BEGIN(nvmlDeviceGetPowerManagementLimit, h);
  if (!mw) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *mw = d->limitMw;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *u) {
  DEV_BEGIN(nvmlDeviceGetUtilizationRates, h);
  if (!u) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  u->gpu = d->utilGpu;
  u->memory = d->utilMem;
  RETURN(NVML_SUCCESS);
}

/* ------------------------------------------------------------------------------------------ */
/* ECC, remapping, retired pages                                                              */

API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t h, nvmlEnableState_t *cur, nvmlEnableState_t *pend) {
  DEV_BEGIN(nvmlDeviceGetEccMode, h);
  if (!cur || !pend) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *cur = *pend = d->eccEnabled;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t h, int errorType, int counterType, unsigned long long *c) {
  DEV_BEGIN(nvmlDeviceGetTotalEccErrors, h);
  if (!c || errorType < 0 || errorType > 1 || counterType < 0 || counterType > 1) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->eccEnabled) RETURN(NVML_ERROR_NOT_SUPPORTED);
  *c = d->ecc[errorType][counterType];
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t h, int errorType, int counterType, int location,
                                                 unsigned long long *c) {
  DEV_BEGIN(nvmlDeviceGetMemoryErrorCounter, h);
  if (!c || errorType < 0 || errorType > 1 || counterType < 0 || counterType > 1 || location < 0)
    RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->eccEnabled) RETURN(NVML_ERROR_NOT_SUPPORTED);
  if (location == 2) *c = d->ecc[errorType][counterType]; /* DRAM */
  else if (location <= 1 || location == 7) *c = 0;         /* L1, L2, SRAM */
  else RETURN(NVML_ERROR_NOT_SUPPORTED);
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t h, unsigned int *corr, unsigned int *unc, unsigned int *pending,
                                           unsigned int *failed) {
  DEV_BEGIN(nvmlDeviceGetRemappedRows, h);
  if (!corr || !unc || !pending || !failed) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->remapSupported) RETURN(NVML_ERROR_NOT_SUPPORTED);
  *corr = d->remapCorr;
  *unc = d->remapUnc;
  *pending = d->remapPending;
  *failed = d->remapFailed;
  RETURN(NVML_SUCCESS);
}

static nvmlReturn_t retired_pages(struct fakeNvmlDevice_st *d, int cause, unsigned int *count,
                                  unsigned long long *addresses, unsigned long long *timestamps) {
  if (!count || cause < 0 || cause > 1) return NVML_ERROR_INVALID_ARGUMENT;
  if (!d->retiredSupported) return NVML_ERROR_NOT_SUPPORTED;
  unsigned int n = cause == 0 ? d->retiredSbe : d->retiredDbe;
  if (*count < n) {
    *count = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned int i = 0; i < n; i++) {
    if (addresses) addresses[i] = 0x1000ULL * (i + 1) + (cause ? 0x800000ULL : 0);
    if (timestamps) timestamps[i] = 1700000000ULL + i;
  }
  *count = n;
  return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t h, int cause, unsigned int *count,
                                              unsigned long long *addresses, unsigned long long *timestamps) {
  DEV_BEGIN(nvmlDeviceGetRetiredPages_v2, h);
  RETURN(retired_pages(d, cause, count, addresses, timestamps));
}
API nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t h, int cause, unsigned int *count, unsigned long long *addresses) {
  DEV_BEGIN(nvmlDeviceGetRetiredPages, h);
  RETURN(retired_pages(d, cause, count, addresses, NULL));
}
API nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t h, nvmlEnableState_t *pending) {
  DEV_BEGIN(nvmlDeviceGetRetiredPagesPendingStatus, h);
  if (!pending) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->retiredSupported) RETURN(NVML_ERROR_NOT_SUPPORTED);
  *pending = d->retiredPending ? 1 : 0;
  RETURN(NVML_SUCCESS);
}

/* ------------------------------------------------------------------------------------------ */
/* clocks                                                                                     */

API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t h, unsigned long long *r) {
  DEV_BEGIN(nvmlDeviceGetCurrentClocksThrottleReasons, h);
  if (!r) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *r = d->clockReasons;
  RETURN(NVML_SUCCESS);
}
#if FAKE_NVML_VERSION >= 535
API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t h, unsigned long long *r) {
  DEV_BEGIN(nvmlDeviceGetCurrentClocksEventReasons, h);
  if (!r) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *r = d->clockReasons;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t h, unsigned long long *m) {
  DEV_BEGIN(nvmlDeviceGetSupportedClocksEventReasons, h);
  if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *m = d->supportedClockReasons;
  RETURN(NVML_SUCCESS);
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* NVLink, PCIe, persistence, fabric                                                          */

API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t h, unsigned int link, nvmlEnableState_t *active) {
  DEV_BEGIN(nvmlDeviceGetNvLinkState, h);
  if (!active) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (d->nvlinks == 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
  if (link >= d->nvlinks) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *active = d->linkUp[link] ? 1 : 0;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t h, unsigned int link, int counter,
                                                 unsigned long long *value) {
  DEV_BEGIN(nvmlDeviceGetNvLinkErrorCounter, h);
  if (!value || counter < 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (d->nvlinks == 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
  if (link >= d->nvlinks) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  int maxCounter = FAKE_NVML_VERSION >= 470 ? 4 : 3;
  if (counter > maxCounter) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *value = d->linkErr[link][counter];
  RETURN(NVML_SUCCESS);
}

#define UINT_GETTER(fname, expr)                                      \
  API nvmlReturn_t fname(nvmlDevice_t h, unsigned int *out) {         \
    DEV_BEGIN(fname, h);                                              \
    if (!out) RETURN(NVML_ERROR_INVALID_ARGUMENT);                    \
    *out = (expr);                                                    \
    RETURN(NVML_SUCCESS);                                             \
  }
UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, d->pcieCurGen)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, d->pcieCurWidth)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, d->pcieMaxGen)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, d->pcieMaxWidth)
UINT_GETTER(nvmlDeviceGetPcieReplayCounter, d->pcieReplay)
#if FAKE_NVML_VERSION >= 525
UINT_GETTER(nvmlDeviceGetGpuMaxPcieLinkGeneration, d->pcieGpuMaxGen)
#endif
#if FAKE_NVML_VERSION >= 515
static const unsigned int PCIE_MBPS[7] = {0, 2500, 5000, 8000, 16000, 32000, 64000};
UINT_GETTER(nvmlDeviceGetPcieSpeed, d->pcieCurGen < 7 ? PCIE_MBPS[d->pcieCurGen] : 0)
#endif

API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t h, nvmlEnableState_t *mode) {
  DEV_BEGIN(nvmlDeviceGetPersistenceMode, h);
  if (!mode) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *mode = d->persistence ? 1 : 0;
  RETURN(NVML_SUCCESS);
}

/* Fills `infos` (v1: 16-byte entries, else 24) when *count holds them all, as NVML does. */
static nvmlReturn_t running_processes(struct fakeNvmlDevice_st *d, unsigned int *count, void *infos, int v1) {
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  unsigned int n = d->procs;
  if (*count < n || (n > 0 && !infos)) {
    *count = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned int i = 0; i < n; i++) {
    if (v1) {
      nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
      p->pid = 4000 + i;
      p->usedGpuMemory = d->procMem;
    } else {
      nvmlProcessInfo_v2_t *p = (nvmlProcessInfo_v2_t *)infos + i;
      p->pid = 4000 + i;
      p->usedGpuMemory = d->procMem;
      p->gpuInstanceId = 0xFFFFFFFFu;
      p->computeInstanceId = 0xFFFFFFFFu;
    }
  }
  *count = n;
  return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t h, unsigned int *count, nvmlProcessInfo_v1_t *infos) {
  DEV_BEGIN(nvmlDeviceGetComputeRunningProcesses, h);
  RETURN(running_processes(d, count, infos, 1));
}
API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t h, unsigned int *count, nvmlProcessInfo_v2_t *infos) {
  DEV_BEGIN(nvmlDeviceGetComputeRunningProcesses_v2, h);
  RETURN(running_processes(d, count, infos, 0));
}
#if FAKE_NVML_VERSION >= 535
API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t h, unsigned int *count, nvmlProcessInfo_v2_t *infos) {
  DEV_BEGIN(nvmlDeviceGetComputeRunningProcesses_v3, h);
  RETURN(running_processes(d, count, infos, 0));
}
#endif

#if FAKE_NVML_VERSION >= 525
API nvmlReturn_t nvmlDeviceGetGpuFabricInfo(nvmlDevice_t h, nvmlGpuFabricInfo_t *info) {
  DEV_BEGIN(nvmlDeviceGetGpuFabricInfo, h);
  if (!info) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->fabricSupported) RETURN(NVML_ERROR_NOT_SUPPORTED);
  memset(info, 0, sizeof *info);
  memcpy(info->clusterUuid, d->clusterUuid, 16);
  info->status = d->fabricStatus;
  info->cliqueId = d->fabricClique;
  info->state = d->fabricState;
  RETURN(NVML_SUCCESS);
}
#endif

#if FAKE_NVML_VERSION >= 550
API nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t h, nvmlGpuFabricInfoV_t *info) {
  DEV_BEGIN(nvmlDeviceGetGpuFabricInfoV, h);
  if (!info) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  int v = 0;
  if (info->version == nvmlGpuFabricInfo_v3 && g.fabricMaxVersion >= 3) v = 3;
  else if (info->version == nvmlGpuFabricInfo_v2 && g.fabricMaxVersion >= 2) v = 2;
  if (!v) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  if (!d->fabricSupported) RETURN(NVML_ERROR_NOT_SUPPORTED);
  unsigned int version = info->version;
  memset(info, 0, v == 3 ? sizeof(nvmlGpuFabricInfo_v3_t) : sizeof(nvmlGpuFabricInfo_v2_t));
  info->version = version;
  memcpy(info->clusterUuid, d->clusterUuid, 16);
  info->status = d->fabricStatus;
  info->cliqueId = d->fabricClique;
  info->state = d->fabricState;
  info->healthMask = d->fabricHealthMask;
  if (v == 3) info->healthSummary = d->fabricSummary;
  RETURN(NVML_SUCCESS);
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* field values                                                                               */

static fake_field *find_field(struct fakeNvmlDevice_st *d, unsigned int id, unsigned int scope) {
  for (int i = 0; i < d->nfields; i++) {
    fake_field *f = &d->fields[i];
    if (f->id == id && (f->scope == SCOPE_ANY || f->scope == scope)) return f;
  }
  return NULL;
}

static void field_value(struct fakeNvmlDevice_st *d, nvmlFieldValue_t *v) {
  unsigned int id = v->fieldId, scope = v->scopeId;
  v->timestamp = now_us();
  v->latencyUsec = 0;
  v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
  v->nvmlReturn = NVML_SUCCESS;
  v->value.ullVal = 0;
  fake_field *f = find_field(d, id, scope);
  if (f) {
    v->nvmlReturn = f->ret;
    v->valueType = f->type;
    v->value = f->value;
    return;
  }
  switch (id) {
    case 3: v->value.ullVal = d->ecc[0][0]; break;
    case 4: v->value.ullVal = d->ecc[1][0]; break;
    case 5: v->value.ullVal = d->ecc[0][1]; break;
    case 6: v->value.ullVal = d->ecc[1][1]; break;
    case 29: case 30: case 31:
      if (!d->retiredSupported) { v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED; break; }
      v->value.ullVal = id == 29 ? d->retiredSbe : id == 30 ? d->retiredDbe : d->retiredPending;
      break;
    case 91:
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = d->nvlinks;
      break;
    case 94:
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = d->pcieReplay;
      break;
    case 142: case 143: case 144: case 145:
      if (!d->remapSupported) { v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED; break; }
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = id == 142 ? d->remapCorr : id == 143 ? d->remapUnc : id == 144 ? d->remapPending : d->remapFailed;
      break;
#if FAKE_NVML_VERSION >= 520
    case 161: case 162: case 163: case 165:
      if (scope >= d->nvlinks) { v->nvmlReturn = d->nvlinks ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_NOT_SUPPORTED; break; }
      if (id == 165) { v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT; v->value.uiVal = d->linkUp[scope]; }
      else v->value.ullVal = d->linkErr[scope][id == 161 ? 0 : id == 162 ? 1 : 2];
      break;
#endif
#if FAKE_NVML_VERSION >= 570
    case 230:
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->value.uiVal = d->recoveryAction;
      break;
#endif
    default:
      v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
      break;
  }
}

API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t h, int count, nvmlFieldValue_t *values) {
  DEV_BEGIN(nvmlDeviceGetFieldValues, h);
  if (count <= 0 || !values) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  for (int i = 0; i < count; i++) field_value(d, &values[i]);
  RETURN(NVML_SUCCESS);
}

/* ------------------------------------------------------------------------------------------ */
/* events                                                                                     */

static struct fakeNvmlEventSet_st *set_of(nvmlEventSet_t s) {
  struct fakeNvmlEventSet_st *p = (struct fakeNvmlEventSet_st *)s;
  if (p < &g.sets[0] || p >= &g.sets[MAX_SETS] || !p->alive) return NULL;
  return p;
}

API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *out) {
  SYS_BEGIN(nvmlEventSetCreate, 1);
  if (!out) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  for (int s = 0; s < MAX_SETS; s++) {
    struct fakeNvmlEventSet_st *p = &g.sets[s];
    if (!p->alive) {
      p->alive = 1;
      memset(p->mask, 0, sizeof p->mask);
      p->head = p->len = 0;
      p->dropped = 0;
      *out = (nvmlEventSet_t)p;
      RETURN(NVML_SUCCESS);
    }
  }
  RETURN(NVML_ERROR_MEMORY);
}

API nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t h, unsigned long long *types) {
  DEV_BEGIN(nvmlDeviceGetSupportedEventTypes, h);
  if (!types) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  *types = d->supportedEvents;
  RETURN(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t h, unsigned long long types, nvmlEventSet_t set) {
  DEV_BEGIN(nvmlDeviceRegisterEvents, h);
  struct fakeNvmlEventSet_st *p = set_of(set);
  if (!p) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  if (types & ~d->supportedEvents) RETURN(NVML_ERROR_NOT_SUPPORTED);
  p->mask[d - &g.devs[0]] |= types;
  RETURN(NVML_SUCCESS);
}

static nvmlReturn_t event_wait(int fn, nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
  nvmlReturn_t e = sys_begin(fn, 1);
  if (e != NVML_SUCCESS) return e;
  struct fakeNvmlEventSet_st *p = set_of(set);
  if (!p || !data) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  struct timespec until;
  deadline_after(&until, (long)timeoutms);
  while (p->len == 0) {
    if (!p->alive) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (timeoutms == 0 || pthread_cond_timedwait(&p->cond, &g_lock, &until) == ETIMEDOUT) {
      if (p->len == 0) RETURN(NVML_ERROR_TIMEOUT);
    }
  }
  fake_event ev = p->q[p->head];
  p->head = (p->head + 1) % QCAP;
  p->len--;
  if (ev.ret != NVML_SUCCESS) RETURN(ev.ret);
  memset(data, 0, sizeof *data);
  data->device = (nvmlDevice_t)&g.devs[ev.dev];
  data->eventType = ev.type;
  data->eventData = ev.data;
  data->gpuInstanceId = 0xFFFFFFFFu;
  data->computeInstanceId = 0xFFFFFFFFu;
  RETURN(NVML_SUCCESS);
}
API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
  return event_wait(FN_nvmlEventSetWait_v2, set, data, timeoutms);
}
API nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
  return event_wait(FN_nvmlEventSetWait, set, data, timeoutms);
}

API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  SYS_BEGIN(nvmlEventSetFree, 1);
  struct fakeNvmlEventSet_st *p = set_of(set);
  if (!p) RETURN(NVML_ERROR_INVALID_ARGUMENT);
  p->alive = 0;
  p->len = 0;
  pthread_cond_broadcast(&p->cond);
  RETURN(NVML_SUCCESS);
}

/* Queues an event (or a wait error) on every live set that has dev registered for type. */
static int enqueue_locked(unsigned int dev, unsigned long long type, unsigned long long data, nvmlReturn_t ret) {
  int delivered = 0;
  for (int s = 0; s < MAX_SETS; s++) {
    struct fakeNvmlEventSet_st *p = &g.sets[s];
    if (!p->alive) continue;
    if (ret == NVML_SUCCESS ? !(p->mask[dev] & type) : p->mask[dev] == 0) continue;
    if (p->len == QCAP) {
      p->dropped++;
      continue;
    }
    p->q[(p->head + p->len) % QCAP] = (fake_event){dev, type, data, ret};
    p->len++;
    delivered++;
    pthread_cond_broadcast(&p->cond);
  }
  return delivered;
}

/* ------------------------------------------------------------------------------------------ */
/* control API                                                                                */

static int check_dev(unsigned int dev) {
  if (dev >= MAX_DEV) {
    set_error("device %u out of range (0..%d)", dev, MAX_DEV - 1);
    return -1;
  }
  return 0;
}

API int fakeNvmlBuildVersion(void) { return FAKE_NVML_VERSION; }
API const char *fakeNvmlLastError(void) { return last_error; }

API void fakeNvmlReset(void) {
  ensure_init();
  pthread_mutex_lock(&g_lock);
  apply_defaults_locked();
  pthread_mutex_unlock(&g_lock);
  load_state_file();
}

API int fakeNvmlInjectEvent(unsigned int dev, unsigned long long type, unsigned long long data) {
  ensure_init();
  if (check_dev(dev)) return -1;
  pthread_mutex_lock(&g_lock);
  int n = enqueue_locked(dev, type, data, NVML_SUCCESS);
  pthread_mutex_unlock(&g_lock);
  return n; /* number of event sets that received it */
}

API int fakeNvmlInjectXid(unsigned int dev, unsigned long long xid) {
  return fakeNvmlInjectEvent(dev, nvmlEventTypeXidCriticalError, xid);
}

static int set_lost(unsigned int dev, int on, int hide) {
  ensure_init();
  if (check_dev(dev)) return -1;
  pthread_mutex_lock(&g_lock);
  int was = g.devs[dev].lost;
  g.devs[dev].lost = on ? 1 : 0;
  g.devs[dev].hidden = on && hide ? 1 : 0;
  if (on && !was) enqueue_locked(dev, 0, 0, NVML_ERROR_GPU_IS_LOST);
  pthread_mutex_unlock(&g_lock);
  return 0;
}
API int fakeNvmlSetLost(unsigned int dev, int on) { return set_lost(dev, on, 0); }

API int fakeNvmlSetResetRequired(unsigned int dev, int on) {
  ensure_init();
  if (check_dev(dev)) return -1;
  pthread_mutex_lock(&g_lock);
  g.devs[dev].resetRequired = on ? 1 : 0;
  pthread_mutex_unlock(&g_lock);
  return 0;
}

API int fakeNvmlSetHangMs(const char *fn, int ms) {
  ensure_init();
  int all = !fn || !*fn || strcmp(fn, "*") == 0;
  int i = all ? -1 : fn_index(fn);
  if (!all && i < 0) {
    set_error("unknown function '%s'", fn);
    return -1;
  }
  pthread_mutex_lock(&g_lock);
  if (all) g.hangAll = ms;
  else g.hang[i] = ms;
  if (ms == 0 || all) {
    /* release calls sleeping under the previous setting; they re-read nothing */
    g.hangGen++;
    pthread_cond_broadcast(&g_hang_cond);
  }
  if (ms == 0 && all) memset(g.hang, 0, sizeof g.hang);
  pthread_mutex_unlock(&g_lock);
  return 0;
}

API int fakeNvmlSetReturn(int dev, const char *fn, int ret) {
  ensure_init();
  int i = fn_index(fn);
  if (i < 0) {
    set_error("unknown function '%s'", fn ? fn : "(null)");
    return -1;
  }
  if (dev >= MAX_DEV) return check_dev((unsigned int)dev);
  pthread_mutex_lock(&g_lock);
  g.ret[dev < 0 ? MAX_DEV : dev][i] = ret;
  pthread_mutex_unlock(&g_lock);
  return 0;
}

API int fakeNvmlSetInitReturn(int ret) {
  ensure_init();
  pthread_mutex_lock(&g_lock);
  g.initRet = ret;
  pthread_mutex_unlock(&g_lock);
  return 0;
}

#define DEV_SETTER_BEGIN(dev)      \
  ensure_init();                   \
  if (check_dev(dev)) return -1;   \
  pthread_mutex_lock(&g_lock);     \
  struct fakeNvmlDevice_st *d = &g.devs[dev];
#define DEV_SETTER_END()           \
  pthread_mutex_unlock(&g_lock);   \
  return 0;

API int fakeNvmlSetTemperature(unsigned int dev, unsigned int c) {
  DEV_SETTER_BEGIN(dev)
  d->temp = c;
  DEV_SETTER_END()
}

API int fakeNvmlSetEcc(unsigned int dev, unsigned long long sbeVol, unsigned long long dbeVol,
                       unsigned long long sbeAgg, unsigned long long dbeAgg) {
  DEV_SETTER_BEGIN(dev)
  d->ecc[0][0] = sbeVol;
  d->ecc[1][0] = dbeVol;
  d->ecc[0][1] = sbeAgg;
  d->ecc[1][1] = dbeAgg;
  DEV_SETTER_END()
}

API int fakeNvmlSetRemap(unsigned int dev, unsigned int corr, unsigned int unc, int pending, int failed) {
  DEV_SETTER_BEGIN(dev)
  d->remapSupported = 1;
  d->remapCorr = corr;
  d->remapUnc = unc;
  d->remapPending = pending ? 1 : 0;
  d->remapFailed = failed ? 1 : 0;
  DEV_SETTER_END()
}

API int fakeNvmlSetClockReasons(unsigned int dev, unsigned long long reasons) {
  DEV_SETTER_BEGIN(dev)
  d->clockReasons = reasons;
  DEV_SETTER_END()
}

API int fakeNvmlSetNvlink(unsigned int dev, unsigned int link, int up) {
  if (link >= MAX_LINKS) {
    set_error("link %u out of range", link);
    return -1;
  }
  DEV_SETTER_BEGIN(dev)
  d->linkUp[link] = up ? 1 : 0;
  DEV_SETTER_END()
}

static int set_field(unsigned int dev, unsigned int id, unsigned int scope, int type, nvmlValue_t value, int ret,
                     int retOnly) {
  DEV_SETTER_BEGIN(dev)
  fake_field *f = NULL;
  for (int i = 0; i < d->nfields; i++)
    if (d->fields[i].id == id && d->fields[i].scope == scope) f = &d->fields[i];
  if (!f) {
    if (d->nfields == MAX_FIELDS) {
      pthread_mutex_unlock(&g_lock);
      set_error("too many fields on device %u", dev);
      return -1;
    }
    f = &d->fields[d->nfields++];
    memset(f, 0, sizeof *f);
    f->id = id;
    f->scope = scope;
    f->type = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
  }
  f->ret = ret;
  if (!retOnly) {
    f->type = type;
    f->value = value;
  }
  DEV_SETTER_END()
}

API int fakeNvmlSetField(unsigned int dev, unsigned int fieldId, unsigned long long value) {
  nvmlValue_t v;
  v.ullVal = value;
  return set_field(dev, fieldId, SCOPE_ANY, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, v, NVML_SUCCESS, 0);
}

API long long fakeNvmlCallCount(const char *fn) {
  ensure_init();
  if (!fn || !*fn || strcmp(fn, "*") == 0) {
    long long total = 0;
    for (int i = 0; i < FN_COUNT; i++) total += __atomic_load_n(&g.calls[i], __ATOMIC_RELAXED);
    return total;
  }
  int i = fn_index(fn);
  if (i < 0) {
    set_error("unknown function '%s'", fn);
    return -1;
  }
  return __atomic_load_n(&g.calls[i], __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------------------------ */
/* command parser                                                                             */

#define MAX_TOK 12

static int tokenize(char *s, char **tok) {
  int n = 0;
  while (*s && n < MAX_TOK) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    if (!*s || *s == '#') break;
    if (*s == '"') {
      tok[n++] = ++s;
      while (*s && *s != '"') s++;
    } else {
      tok[n++] = s;
      while (*s && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') s++;
    }
    if (*s) *s++ = 0;
  }
  return n;
}

static int parse_u64(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  if (!s || !*s || *s == '-') return -1;
  *out = strtoull(s, &end, 0);
  return errno || *end ? -1 : 0;
}

static int parse_int(const char *s, long long *out) {
  char *end;
  errno = 0;
  if (!s || !*s) return -1;
  *out = strtoll(s, &end, 0);
  return errno || *end ? -1 : 0;
}

static int parse_bool(const char *s, int *out) {
  if (!s) return -1;
  if (!strcmp(s, "on") || !strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "up") || !strcmp(s, "yes")) *out = 1;
  else if (!strcmp(s, "off") || !strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "down") || !strcmp(s, "no")) *out = 0;
  else return -1;
  return 0;
}

/* Parses DEV into [lo, hi). */
static int parse_devs(const char *s, unsigned int *lo, unsigned int *hi) {
  unsigned long long v;
  if (s && !strcmp(s, "*")) {
    *lo = 0;
    *hi = MAX_DEV;
    return 0;
  }
  if (parse_u64(s, &v) || v >= MAX_DEV) return -1;
  *lo = (unsigned int)v;
  *hi = (unsigned int)v + 1;
  return 0;
}

static int threshold_kind(const char *s) {
  if (!strcmp(s, "shutdown")) return 0;
  if (!strcmp(s, "slowdown")) return 1;
  if (!strcmp(s, "memmax")) return 2;
  if (!strcmp(s, "gpumax")) return 3;
  long long v;
  if (parse_int(s, &v) || v < 0 || v >= 8) return -1;
  return (int)v;
}

static int nvlink_counter(const char *s) {
  static const char *const names[] = {"replay", "recovery", "crcflit", "crcdata", "eccdata"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(s, names[i])) return i;
  long long v;
  if (parse_int(s, &v) || v < 0 || v > 4) return -1;
  return (int)v;
}

/* Numeric arguments tok[from..n) into a[], all required. */
static int nums(char **tok, int n, int from, int need, long long *a) {
  if (n - from < need) return -1;
  for (int i = 0; i < n - from && i < MAX_TOK; i++)
    if (parse_int(tok[from + i], &a[i])) return -1;
  return 0;
}

static int run_command(char *line) {
  char *tok[MAX_TOK];
  int n = tokenize(line, tok);
  if (n == 0) return 0;
  const char *cmd = tok[0];
  long long a[MAX_TOK] = {0};
  unsigned int lo = 0, hi = 0;
  int b = 0;
#define BAD() do { set_error("bad arguments for '%s'", cmd); return -1; } while (0)
#define DEVS(i) do { if (n <= (i) || parse_devs(tok[i], &lo, &hi)) BAD(); } while (0)
#define FOR_DEVS for (unsigned int dv = lo; dv < hi; dv++)
#define LOCKED(body) do { pthread_mutex_lock(&g_lock); FOR_DEVS { struct fakeNvmlDevice_st *d = &g.devs[dv]; body; } pthread_mutex_unlock(&g_lock); } while (0)

  if (!strcmp(cmd, "reset")) {
    if (t_loading) {
      set_error("'reset' is not allowed in a state file");
      return -1;
    }
    fakeNvmlReset();
  } else if (!strcmp(cmd, "count")) {
    if (nums(tok, n, 1, 1, a) || a[0] < 0 || a[0] > MAX_DEV) BAD();
    pthread_mutex_lock(&g_lock);
    g.count = (unsigned int)a[0];
    pthread_mutex_unlock(&g_lock);
  } else if (!strcmp(cmd, "driver") || !strcmp(cmd, "nvmlversion")) {
    if (n < 2) BAD();
    pthread_mutex_lock(&g_lock);
    if (cmd[0] == 'd') snprintf(g.driver, sizeof g.driver, "%s", tok[1]);
    else snprintf(g.nvmlVersion, sizeof g.nvmlVersion, "%s", tok[1]);
    pthread_mutex_unlock(&g_lock);
  } else if (!strcmp(cmd, "cuda")) {
    if (nums(tok, n, 1, 1, a)) BAD();
    pthread_mutex_lock(&g_lock);
    g.cuda = (int)a[0];
    pthread_mutex_unlock(&g_lock);
  } else if (!strcmp(cmd, "init")) {
    if (nums(tok, n, 1, 1, a)) BAD();
    fakeNvmlSetInitReturn((int)a[0]);
  } else if (!strcmp(cmd, "fabricversion")) {
    if (nums(tok, n, 1, 1, a) || a[0] < 1 || a[0] > 3) BAD();
    pthread_mutex_lock(&g_lock);
    g.fabricMaxVersion = (int)a[0];
    pthread_mutex_unlock(&g_lock);
  } else if (!strcmp(cmd, "name") || !strcmp(cmd, "uuid") || !strcmp(cmd, "serial") || !strcmp(cmd, "pci")) {
    DEVS(1);
    if (n < 3) BAD();
    LOCKED({
      if (cmd[0] == 'n') snprintf(d->name, sizeof d->name, "%s", tok[2]);
      else if (cmd[0] == 'u') snprintf(d->uuid, sizeof d->uuid, "%s", tok[2]);
      else if (cmd[0] == 's') snprintf(d->serial, sizeof d->serial, "%s", tok[2]);
      else { snprintf(d->busId, sizeof d->busId, "%s", tok[2]); parse_bus_id(d); }
    });
  } else if (!strcmp(cmd, "memory")) {
    DEVS(1);
    if (nums(tok, n, 2, 2, a) || a[0] < a[1]) BAD();
    LOCKED({ d->memTotal = (unsigned long long)a[0]; d->memUsed = (unsigned long long)a[1];
             if (n > 4) d->memReserved = (unsigned long long)a[2]; });
  } else if (!strcmp(cmd, "temp")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0) BAD();
    LOCKED(d->temp = (unsigned int)a[0]);
  } else if (!strcmp(cmd, "margin")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a)) BAD();
    LOCKED({ d->marginSet = 1; d->margin = (int)a[0]; });
  } else if (!strcmp(cmd, "threshold")) {
    DEVS(1);
    int k = n > 2 ? threshold_kind(tok[2]) : -1;
    if (k < 0 || nums(tok, n, 3, 1, a)) BAD();
    LOCKED(d->thresh[k] = (int)a[0]);
  } else if (!strcmp(cmd, "power")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0) BAD();
    LOCKED({ d->powerMw = (unsigned int)a[0]; if (n > 3) d->limitMw = (unsigned int)a[1]; });
  } else if (!strcmp(cmd, "util")) {
    DEVS(1);
    if (nums(tok, n, 2, 2, a)) BAD();
    LOCKED({ d->utilGpu = (unsigned int)a[0]; d->utilMem = (unsigned int)a[1]; });
  } else if (!strcmp(cmd, "eccmode") || !strcmp(cmd, "persistence")) {
    DEVS(1);
    if (n < 3 || parse_bool(tok[2], &b)) BAD();
    LOCKED({ if (cmd[0] == 'e') d->eccEnabled = b; else d->persistence = b; });
  } else if (!strcmp(cmd, "procs")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0 || a[0] > 64 || (n > 3 && a[1] < 0)) BAD();
    LOCKED({ d->procs = (unsigned int)a[0]; d->procMem = n > 3 ? (unsigned long long)a[1] : 1073741824ULL; });
  } else if (!strcmp(cmd, "ecc")) {
    DEVS(1);
    if (nums(tok, n, 2, 2, a)) BAD();
    LOCKED({ d->ecc[0][0] = (unsigned long long)a[0]; d->ecc[1][0] = (unsigned long long)a[1];
             if (n > 5) { d->ecc[0][1] = (unsigned long long)a[2]; d->ecc[1][1] = (unsigned long long)a[3]; } });
  } else if (!strcmp(cmd, "remap") || !strcmp(cmd, "retired")) {
    int isRemap = cmd[2] == 'm';
    DEVS(1);
    if (n == 3 && !strcmp(tok[2], "unsupported")) {
      LOCKED({ if (isRemap) d->remapSupported = 0; else d->retiredSupported = 0; });
    } else if (isRemap) {
      if (nums(tok, n, 2, 4, a)) BAD();
      LOCKED({ d->remapSupported = 1; d->remapCorr = (unsigned int)a[0]; d->remapUnc = (unsigned int)a[1];
               d->remapPending = a[2] != 0; d->remapFailed = a[3] != 0; });
    } else {
      if (nums(tok, n, 2, 3, a)) BAD();
      LOCKED({ d->retiredSupported = 1; d->retiredSbe = (unsigned int)a[0]; d->retiredDbe = (unsigned int)a[1];
               d->retiredPending = a[2] != 0; });
    }
  } else if (!strcmp(cmd, "clocks") || !strcmp(cmd, "events")) {
    unsigned long long m;
    DEVS(1);
    if (n < 3 || parse_u64(tok[2], &m)) BAD();
    LOCKED({ if (cmd[1] == 'l') d->clockReasons = m; else d->supportedEvents = m; });
  } else if (!strcmp(cmd, "nvlinks")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0 || a[0] > MAX_LINKS) BAD();
    LOCKED(d->nvlinks = (unsigned int)a[0]);
  } else if (!strcmp(cmd, "nvlink")) {
    DEVS(1);
    if (n < 4 || parse_int(tok[2], &a[0]) || a[0] < 0 || a[0] >= MAX_LINKS || parse_bool(tok[3], &b)) BAD();
    LOCKED(d->linkUp[a[0]] = (unsigned char)b);
  } else if (!strcmp(cmd, "nvlinkerr")) {
    DEVS(1);
    int c = n > 3 ? nvlink_counter(tok[3]) : -1;
    unsigned long long v;
    if (n < 5 || parse_int(tok[2], &a[0]) || a[0] < 0 || a[0] >= MAX_LINKS || c < 0 || parse_u64(tok[4], &v)) BAD();
    LOCKED(d->linkErr[a[0]][c] = v);
  } else if (!strcmp(cmd, "pcie")) {
    DEVS(1);
    if (nums(tok, n, 2, 4, a)) BAD();
    LOCKED({ d->pcieCurGen = (unsigned int)a[0]; d->pcieCurWidth = (unsigned int)a[1]; d->pcieMaxGen = (unsigned int)a[2];
             d->pcieMaxWidth = (unsigned int)a[3]; d->pcieGpuMaxGen = n > 6 ? (unsigned int)a[4] : (unsigned int)a[2]; });
  } else if (!strcmp(cmd, "replay")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0) BAD();
    LOCKED(d->pcieReplay = (unsigned int)a[0]);
  } else if (!strcmp(cmd, "fabric")) {
    DEVS(1);
    if (n == 3 && !strcmp(tok[2], "unsupported")) {
      LOCKED(d->fabricSupported = 0);
    } else {
      if (nums(tok, n, 2, 1, a)) BAD();
      LOCKED({ d->fabricSupported = 1; d->fabricState = (unsigned char)a[0];
               if (n > 3) d->fabricStatus = (nvmlReturn_t)a[1];
               if (n > 4) d->fabricHealthMask = (unsigned int)a[2];
               if (n > 5) d->fabricSummary = (unsigned char)a[3];
               if (n > 6) d->fabricClique = (unsigned int)a[4]; });
    }
  } else if (!strcmp(cmd, "recovery")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] < 0) BAD();
    LOCKED(d->recoveryAction = (unsigned int)a[0]);
  } else if (!strcmp(cmd, "field") || !strcmp(cmd, "fieldret")) {
    DEVS(1);
    if (n < 4 || parse_int(tok[2], &a[0]) || a[0] < 0) BAD();
    unsigned int scope = SCOPE_ANY;
    if (n > 4) {
      if (parse_int(tok[4], &a[2]) || a[2] < 0) BAD();
      scope = (unsigned int)a[2];
    }
    nvmlValue_t v;
    int type = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, retOnly = !strcmp(cmd, "fieldret");
    nvmlReturn_t ret = NVML_SUCCESS;
    v.ullVal = 0;
    if (retOnly) {
      if (parse_int(tok[3], &a[1])) BAD();
      ret = (nvmlReturn_t)a[1];
    } else if (strchr(tok[3], '.')) {
      char *end;
      v.dVal = strtod(tok[3], &end);
      if (*end) BAD();
      type = NVML_VALUE_TYPE_DOUBLE;
    } else if (tok[3][0] == '-') {
      if (parse_int(tok[3], &a[1])) BAD();
      v.sllVal = a[1];
      type = NVML_VALUE_TYPE_SIGNED_LONG_LONG;
    } else if (parse_u64(tok[3], &v.ullVal)) {
      BAD();
    }
    FOR_DEVS if (set_field(dv, (unsigned int)a[0], scope, type, v, ret, retOnly)) return -1;
  } else if (!strcmp(cmd, "lost")) {
    DEVS(1);
    if (n < 3 || parse_bool(tok[2], &b)) BAD();
    int hide = n > 3 && !strcmp(tok[3], "hide");
    if (n > 3 && !hide) BAD();
    FOR_DEVS if (dv < MAX_DEV) set_lost(dv, b, hide);
  } else if (!strcmp(cmd, "resetrequired")) {
    DEVS(1);
    if (n < 3 || parse_bool(tok[2], &b)) BAD();
    FOR_DEVS fakeNvmlSetResetRequired(dv, b);
  } else if (!strcmp(cmd, "ret")) {
    if (n < 4 || parse_int(tok[3], &a[0])) BAD();
    if (!strcmp(tok[1], "*")) return fakeNvmlSetReturn(-1, tok[2], (int)a[0]);
    if (parse_int(tok[1], &a[1]) || a[1] < 0 || a[1] >= MAX_DEV) BAD();
    return fakeNvmlSetReturn((int)a[1], tok[2], (int)a[0]);
  } else if (!strcmp(cmd, "hang")) {
    if (n < 3 || parse_int(tok[2], &a[0])) BAD();
    return fakeNvmlSetHangMs(tok[1], (int)a[0]);
  } else if (!strcmp(cmd, "xid") || !strcmp(cmd, "event")) {
    unsigned long long type = nvmlEventTypeXidCriticalError, data;
    int isXid = cmd[0] == 'x';
    DEVS(1);
    if (isXid ? (n < 3 || parse_u64(tok[2], &data)) : (n < 4 || parse_u64(tok[2], &type) || parse_u64(tok[3], &data)))
      BAD();
    FOR_DEVS fakeNvmlInjectEvent(dv, type, data);
  } else if (!strcmp(cmd, "eventret")) {
    DEVS(1);
    if (nums(tok, n, 2, 1, a) || a[0] == 0) BAD();
    pthread_mutex_lock(&g_lock);
    FOR_DEVS enqueue_locked(dv, 0, 0, (nvmlReturn_t)a[0]);
    pthread_mutex_unlock(&g_lock);
  } else {
    set_error("unknown command '%s'", cmd);
    return -1;
  }
  return 0;
#undef BAD
#undef DEVS
#undef FOR_DEVS
#undef LOCKED
}

API int fakeNvmlCommand(const char *line) {
  ensure_init();
  if (!line) return -1;
  char buf[1024];
  int rc = 0;
  /* several commands may be separated by newlines or ';' */
  const char *p = line;
  while (*p) {
    size_t len = strcspn(p, "\n;");
    if (len >= sizeof buf) {
      set_error("command too long");
      return -1;
    }
    memcpy(buf, p, len);
    buf[len] = 0;
    if (run_command(buf)) rc = -1;
    p += len;
    if (*p) p++;
  }
  return rc;
}

API int fakeNvmlLoadState(const char *path) {
  ensure_init();
  FILE *f = fopen(path, "r");
  if (!f) {
    set_error("cannot open state file %s: %s", path, strerror(errno));
    return -1;
  }
  char line[1024];
  int rc = 0, lineno = 0;
  t_loading++;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    if (run_command(line)) {
      fprintf(stderr, "fake-nvml: %s:%d: the line above was rejected\n", path, lineno);
      rc = -1;
    }
  }
  t_loading--;
  fclose(f);
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* control FIFO                                                                               */

static void *control_thread(void *arg) {
  const char *path = (const char *)arg;
  struct stat st;
  if (stat(path, &st) != 0) {
    if (mkfifo(path, 0600) != 0 && errno != EEXIST) {
      set_error("cannot create control FIFO %s: %s", path, strerror(errno));
      return NULL;
    }
  } else if (!S_ISFIFO(st.st_mode)) {
    set_error("FAKE_NVML_CONTROL=%s exists and is not a FIFO", path);
    return NULL;
  }
  char buf[4096];
  size_t have = 0;
  for (;;) {
    /* Read and write: the FIFO always has a writer (this one), so read() never sees an end of
     * file and the FIFO is never closed under a writer. Opened for reading only, it was closed
     * at each writer's end, and a line written by the next writer in that moment was lost (or
     * its write failed with EPIPE): one Xid in 16 written back to back, now and then. */
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      set_error("cannot open control FIFO %s: %s", path, strerror(errno));
      return NULL;
    }
    for (;;) {
      ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      have += (size_t)r;
      buf[have] = 0;
      char *start = buf, *nl;
      while ((nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
        *nl = 0;
        fakeNvmlCommand(start);
        start = nl + 1;
      }
      have -= (size_t)(start - buf);
      memmove(buf, start, have);
      if (have == sizeof buf - 1) {
        set_error("control line too long; dropped");
        have = 0;
      }
    }
    if (have > 0) { /* last line without a newline */
      buf[have] = 0;
      fakeNvmlCommand(buf);
      have = 0;
    }
    close(fd);
  }
  return NULL;
}
