package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// The kernel's sock_diag interface (linux/inet_diag.h). Reading
// /proc/net/tcp walks every bucket of the connection hash table, which
// costs milliseconds of system time per read on a host with a large
// table even when it holds a few sockets; a sock_diag dump of listening
// sockets walks only the listening ones.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	tcpfListen       = 1 << 10
	diagReqLen       = 56 // struct inet_diag_req_v2
	diagMsgLen       = 72 // struct inet_diag_msg
)

// errDiagTruncated is a sock_diag reply shorter than its header says.
var errDiagTruncated = errors.New("sock_diag: truncated reply")

// diagListeningInodes returns the inodes of the TCP sockets of family
// (AF_INET or AF_INET6) that listen on port, from the kernel's sock_diag.
func diagListeningInodes(family uint8, port int) ([]uint64, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer func() { _ = syscall.Close(fd) }()

	req := make([]byte, syscall.NLMSG_HDRLEN+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence number
	body := req[syscall.NLMSG_HDRLEN:]
	body[0] = family
	body[1] = syscall.IPPROTO_TCP
	ne.PutUint32(body[4:], tcpfListen)
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}

	var inodes []uint64
	buf := make([]byte, 32<<10)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				// A dump that failed part-way says so here (newer kernels).
				if len(m.Data) >= 4 {
					if errno := int32(ne.Uint32(m.Data)); errno < 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(-errno))
					}
				}
				return inodes, nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(ne.Uint32(m.Data)); errno < 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(-errno))
					}
				}
				return nil, errDiagTruncated
			}
			if len(m.Data) < diagMsgLen {
				return nil, errDiagTruncated
			}
			// inet_diag_msg: family, state, timer, retrans, then the
			// socket id whose first field is the source port (big
			// endian); the inode is the last field.
			sport := binary.BigEndian.Uint16(m.Data[4:])
			inode := ne.Uint32(m.Data[68:])
			if int(sport) == port && inode != 0 {
				inodes = append(inodes, uint64(inode))
			}
		}
	}
}
