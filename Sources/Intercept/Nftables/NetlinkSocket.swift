import CNetfilter
import Glibc

/// A netlink socket (libmnl) with one owner; closed on deinit.
final class NetlinkSocket {
    private let handle: OpaquePointer
    let portID: UInt32
    private var nextSeq: UInt32

    init(bus: Int32) throws(CaptureError) {
        guard let h = mnl_socket_open(bus) else {
            throw CaptureError.system("opening a netlink socket", errno: errno)
        }
        guard mnl_socket_bind(h, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let e = errno
            mnl_socket_close(h)
            throw CaptureError.system("binding a netlink socket", errno: e)
        }
        handle = h
        portID = mnl_socket_get_portid(h)
        nextSeq = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit { mnl_socket_close(handle) }

    func takeSeq() -> UInt32 {
        nextSeq &+= 1
        return nextSeq
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws(CaptureError) {
        let n = mnl_socket_sendto(handle, bytes.baseAddress, bytes.count)
        if n < 0 { throw CaptureError.system("sending to netlink", errno: errno) }
    }

    func send(_ buffer: [UInt8], count: Int) throws(CaptureError) {
        let n = buffer.withUnsafeBytes { mnl_socket_sendto(handle, $0.baseAddress, count) }
        if n < 0 { throw CaptureError.system("sending to netlink", errno: errno) }
    }

    /// Every reply already queued for us. Netlink processes a request synchronously inside sendmsg, so
    /// after a batch was sent all its acknowledgements are waiting.
    func drainReplies(_ body: (UnsafePointer<nlmsghdr>) throws(CaptureError) -> Void) throws(CaptureError) {
        var buffer = [UInt8](repeating: 0, count: Int(pf_mnl_socket_buffer_size()) * 4)
        let fd = mnl_socket_get_fd(handle)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                throw CaptureError.system("reading netlink replies", errno: errno)
            }
            if n == 0 { return }
            try Self.walk(buffer, count: n, body)
        }
    }

    /// Replies of a dump, up to NLMSG_DONE (blocking reads).
    func receiveDump(seq: UInt32, _ body: (UnsafePointer<nlmsghdr>) throws(CaptureError) -> Void) throws(CaptureError) {
        var buffer = [UInt8](repeating: 0, count: Int(pf_mnl_socket_buffer_size()) * 4)
        while true {
            let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(handle, $0.baseAddress, $0.count) }
            if n < 0 { throw CaptureError.system("reading a netlink dump", errno: errno) }
            var done = false
            var failure: Int32 = 0
            try Self.walk(buffer, count: n) { (h: UnsafePointer<nlmsghdr>) throws(CaptureError) in
                guard h.pointee.nlmsg_seq == seq else { return }
                switch Int32(h.pointee.nlmsg_type) {
                case NLMSG_DONE: done = true
                case NLMSG_ERROR:
                    let err = mnl_nlmsg_get_payload(h).assumingMemoryBound(to: nlmsgerr.self).pointee.error
                    if err != 0 { failure = -err }
                    done = true
                default: try body(h)
                }
            }
            if failure != 0 { throw CaptureError.system("netlink dump", errno: failure) }
            if done { return }
        }
    }

    private static func walk(
        _ buffer: [UInt8], count: Int, _ body: (UnsafePointer<nlmsghdr>) throws(CaptureError) -> Void
    ) throws(CaptureError) {
        let failure: CaptureError? = buffer.withUnsafeBytes { raw -> CaptureError? in
            var remaining = Int32(count)
            var h = UnsafeMutableRawPointer(mutating: raw.baseAddress!).assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(h, remaining) {
                do throws(CaptureError) { try body(UnsafePointer(h)) } catch { return error }
                h = mnl_nlmsg_next(h, &remaining)!
            }
            return nil
        }
        if let failure { throw failure }
    }

    /// The error code of an NLMSG_ERROR reply (0 for an acknowledgement), or nil for other messages.
    static func errorCode(_ h: UnsafePointer<nlmsghdr>) -> Int32? {
        guard Int32(h.pointee.nlmsg_type) == NLMSG_ERROR else { return nil }
        return -mnl_nlmsg_get_payload(h).assumingMemoryBound(to: nlmsgerr.self).pointee.error
    }
}
