// libcap, for the sidecar's least-privilege start: check what it has, keep only what it needs.
#ifndef PILOTFISH_CLIBCAP_SHIM_H
#define PILOTFISH_CLIBCAP_SHIM_H

#include <sys/capability.h>
#include <sys/prctl.h>

// 1 when the calling thread has `cap` in its effective set, 0 when not, -1 on error.
static inline int pf_cap_effective(int cap) {
    cap_t caps = cap_get_proc();
    if (!caps) return -1;
    cap_flag_value_t value = CAP_CLEAR;
    int rc = cap_get_flag(caps, (cap_value_t)cap, CAP_EFFECTIVE, &value);
    cap_free(caps);
    if (rc != 0) return -1;
    return value == CAP_SET ? 1 : 0;
}

// Replaces the calling thread's permitted and effective sets with `keep` (inheritable and ambient are
// cleared). Capabilities are per thread in Linux: every thread of the process must call this.
static inline int pf_cap_keep_only(const int *keep, int count) {
    cap_t caps = cap_init();
    if (!caps) return -1;
    if (count > 0) {
        cap_value_t values[64];
        for (int i = 0; i < count && i < 64; i++) values[i] = (cap_value_t)keep[i];
        if (cap_set_flag(caps, CAP_PERMITTED, count, values, CAP_SET) != 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, count, values, CAP_SET) != 0) {
            cap_free(caps);
            return -1;
        }
    }
    int rc = cap_set_proc(caps);
    cap_free(caps);
    if (rc == 0) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return rc;
}

#endif
