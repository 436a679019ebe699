/*
 * LD_PRELOAD shim that gives wrk (Debian's wrk 4.1, linked against the
 * system's OpenSSL 3) the TLS controls scripts/bench needs and wrk lacks.
 *
 * Why: wrk keeps one SSL object per connection slot and recycles it with
 * SSL_shutdown + SSL_clear when it reconnects. SSL_clear keeps the session
 * of a cleanly shut down connection, so with `Connection: close` every
 * connection after the first resumes the previous one (TLS 1.2 session id or
 * ticket, TLS 1.3 PSK) whenever the server allows it: wrk alone measures
 * resumptions, not handshakes. wrk also has no option for the protocol
 * version or for a client certificate.
 *
 * Environment (all optional):
 *   TLS_SHIM_NO_RESUME=1        forget the previous session before every
 *                               handshake: each connection is a full handshake
 *   TLS_SHIM_VERSION=1.2|1.3    offer exactly this protocol version
 *   TLS_SHIM_CERT, TLS_SHIM_KEY present this client certificate chain (PEM)
 *                               and private key when the server asks for one
 *
 * At exit it prints one line to stderr, which scripts/bench parses:
 *   tls-shim: handshakes=N resumed=N failed=N version=V cipher=C group=G
 *             hs_p50_us=N hs_p99_us=N
 * version, cipher and group are those of the first completed handshake.
 * Handshake time runs from the first SSL_connect of a connection (the TCP
 * connection is established, ClientHello not yet sent) to the SSL_connect
 * that completes it, as seen by wrk's event loop.
 *
 * Build: cc -shared -fPIC -O2 -o wrk_tls_shim.so wrk_tls_shim.c -ldl -lssl -lcrypto
 * Use:   LD_PRELOAD=$PWD/wrk_tls_shim.so TLS_SHIM_NO_RESUME=1 wrk ... https://...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Handshake-time histogram: 10 us buckets up to 2 s, then one overflow bucket. */
#define BUCKET_US 10
#define BUCKETS 200000

static uint64_t histogram[BUCKETS + 1];
static uint64_t handshakes, resumed, failed;
static int no_resume, want_version;
static const char *cert_file, *key_file;
static int start_index = -1;
static char first_version[32], first_cipher[64], first_group[32];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *configured_ctx;

static SSL *(*real_SSL_new)(SSL_CTX *);
static int (*real_SSL_connect)(SSL *);

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

__attribute__((constructor)) static void shim_init(void) {
    real_SSL_new = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new");
    real_SSL_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (real_SSL_new == NULL || real_SSL_connect == NULL) {
        fprintf(stderr, "tls-shim: cannot find SSL_new/SSL_connect: %s\n", dlerror());
        exit(2);
    }
    const char *v = getenv("TLS_SHIM_NO_RESUME");
    no_resume = v != NULL && strcmp(v, "1") == 0;
    v = getenv("TLS_SHIM_VERSION");
    if (v != NULL && *v != '\0') {
        if (strcmp(v, "1.2") == 0) {
            want_version = TLS1_2_VERSION;
        } else if (strcmp(v, "1.3") == 0) {
            want_version = TLS1_3_VERSION;
        } else {
            fprintf(stderr, "tls-shim: TLS_SHIM_VERSION must be 1.2 or 1.3, not '%s'\n", v);
            exit(2);
        }
    }
    cert_file = getenv("TLS_SHIM_CERT");
    key_file = getenv("TLS_SHIM_KEY");
    if ((cert_file == NULL) != (key_file == NULL)) {
        fprintf(stderr, "tls-shim: set both TLS_SHIM_CERT and TLS_SHIM_KEY, or neither\n");
        exit(2);
    }
    start_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static uint64_t percentile_us(uint64_t total, double p) {
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)total + 0.999999), seen = 0;
    if (rank == 0) rank = 1;
    for (size_t i = 0; i <= BUCKETS; i++) {
        seen += histogram[i];
        if (seen >= rank) return (uint64_t)(i + 1) * BUCKET_US; /* upper edge of the bucket */
    }
    return (uint64_t)(BUCKETS + 1) * BUCKET_US;
}

__attribute__((destructor)) static void shim_report(void) {
    uint64_t total = 0;
    for (size_t i = 0; i <= BUCKETS; i++) total += histogram[i];
    fprintf(stderr,
            "tls-shim: handshakes=%llu resumed=%llu failed=%llu version=%s cipher=%s group=%s "
            "hs_p50_us=%llu hs_p99_us=%llu\n",
            (unsigned long long)handshakes, (unsigned long long)resumed, (unsigned long long)failed,
            first_version[0] ? first_version : "-", first_cipher[0] ? first_cipher : "-",
            first_group[0] ? first_group : "-",
            (unsigned long long)percentile_us(total, 0.50), (unsigned long long)percentile_us(total, 0.99));
}

/* Configure the client context once, when wrk makes its first SSL from it. */
SSL *SSL_new(SSL_CTX *ctx) {
    pthread_mutex_lock(&lock);
    if (ctx != NULL && ctx != configured_ctx) {
        if (want_version != 0 && (!SSL_CTX_set_min_proto_version(ctx, want_version) ||
                                  !SSL_CTX_set_max_proto_version(ctx, want_version))) {
            fprintf(stderr, "tls-shim: cannot restrict the protocol version\n");
            exit(2);
        }
        if (cert_file != NULL && (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
                                  SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
                                  SSL_CTX_check_private_key(ctx) != 1)) {
            fprintf(stderr, "tls-shim: cannot load client certificate %s / key %s\n", cert_file, key_file);
            exit(2);
        }
        configured_ctx = ctx;
    }
    pthread_mutex_unlock(&lock);
    return real_SSL_new(ctx);
}

static void remember_first(SSL *ssl) {
    pthread_mutex_lock(&lock);
    if (first_version[0] == '\0') {
        const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
        int nid = SSL_get_negotiated_group(ssl);
        const char *group = nid > 0 ? OBJ_nid2sn(nid) : NULL;
        snprintf(first_version, sizeof first_version, "%s", SSL_get_version(ssl));
        snprintf(first_cipher, sizeof first_cipher, "%s", cipher ? SSL_CIPHER_get_name(cipher) : "-");
        snprintf(first_group, sizeof first_group, "%s", group ? group : "-");
    }
    pthread_mutex_unlock(&lock);
}

int SSL_connect(SSL *ssl) {
    if (SSL_in_before(ssl)) {
        /* First call for this connection: nothing sent yet. */
        if (no_resume) SSL_set_session(ssl, NULL);
        SSL_set_ex_data(ssl, start_index, (void *)(uintptr_t)now_us());
    }
    int rc = real_SSL_connect(ssl);
    if (rc == 1) {
        uint64_t start = (uint64_t)(uintptr_t)SSL_get_ex_data(ssl, start_index);
        uint64_t elapsed = start != 0 ? now_us() - start : 0;
        size_t bucket = elapsed / BUCKET_US;
        if (bucket > BUCKETS) bucket = BUCKETS;
        __atomic_fetch_add(&histogram[bucket], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&handshakes, 1, __ATOMIC_RELAXED);
        if (SSL_session_reused(ssl)) __atomic_fetch_add(&resumed, 1, __ATOMIC_RELAXED);
        remember_first(ssl);
    } else {
        int err = SSL_get_error(ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            __atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED);
        }
    }
    return rc;
}
