// System headers for nftables over netlink (libnftnl, libmnl) and rtnetlink policy routing.
// <netinet/in.h> and <net/if.h> come before the kernel uapi headers so their definitions win.
#ifndef PILOTFISH_CNETFILTER_SHIM_H
#define PILOTFISH_CNETFILTER_SHIM_H

#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/fsuid.h>
#include <netinet/in.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_conntrack_tuple_common.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/table.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/expr.h>
#include <libnftnl/udata.h>
#include <libnftnl/common.h>

// Constants Swift cannot import from macros with casts or expressions.
static inline uint32_t pf_nlm_f_request(void) { return NLM_F_REQUEST; }
static inline uint32_t pf_nlm_f_ack(void) { return NLM_F_ACK; }
static inline uint32_t pf_nlm_f_create(void) { return NLM_F_CREATE; }
static inline uint32_t pf_nlm_f_excl(void) { return NLM_F_EXCL; }
static inline uint32_t pf_nlm_f_replace(void) { return NLM_F_REPLACE; }
static inline uint32_t pf_nlm_f_dump(void) { return NLM_F_DUMP; }
static inline int pf_mnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }
static inline int pf_mnl_cb_ok(void) { return MNL_CB_OK; }
static inline int pf_mnl_cb_stop(void) { return MNL_CB_STOP; }
static inline int pf_mnl_cb_error(void) { return MNL_CB_ERROR; }

// setfsuid/setfsgid change only the calling thread's filesystem IDs, which the kernel stamps on new
// sockets (what `meta skuid` and `-m owner` match). They return the previous ID.
static inline int pf_setfsuid(uint32_t uid) { return setfsuid(uid); }
static inline int pf_setfsgid(uint32_t gid) { return setfsgid(gid); }

// A rule's comment as nft(8) stores it: NFTNL_UDATA_RULE_COMMENT, NUL-terminated.
static inline int pf_nftnl_rule_set_comment(struct nftnl_rule *rule, const char *comment) {
    struct nftnl_udata_buf *buf = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
    if (!buf) return -1;
    if (!nftnl_udata_put_strz(buf, NFTNL_UDATA_RULE_COMMENT, comment)) {
        nftnl_udata_buf_free(buf);
        return -1;
    }
    int rc = nftnl_rule_set_data(rule, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(buf), nftnl_udata_buf_len(buf));
    nftnl_udata_buf_free(buf);
    return rc;
}

static int pf_comment_cb(const struct nftnl_udata *attr, void *data) {
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT) {
        *(const char **)data = (const char *)nftnl_udata_get(attr);
    }
    return 0;
}

// The comment of a rule read back from the kernel, or NULL.
static inline const char *pf_nftnl_rule_get_comment(const struct nftnl_rule *rule) {
    uint32_t len = 0;
    const void *data = nftnl_rule_get_data(rule, NFTNL_RULE_USERDATA, &len);
    if (!data || len == 0) return NULL;
    const char *comment = NULL;
    if (nftnl_udata_parse(data, len, pf_comment_cb, &comment) < 0) return NULL;
    return comment;
}

#endif
