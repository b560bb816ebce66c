package procfs

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = "0A"

// ListeningInodes returns the inodes of the TCP sockets, IPv4 and IPv6, on
// any address, that listen on port in this network namespace. It asks the
// kernel's sock_diag, and reads /proc/net/tcp{,6} where that fails.
func ListeningInodes(port int) ([]uint64, error) {
	var inodes []uint64
	for _, fam := range []struct {
		family uint8
		table  string
	}{{syscall.AF_INET, "tcp"}, {syscall.AF_INET6, "tcp6"}} {
		found, err := diagListeningInodes(fam.family, port)
		if err != nil {
			found, err = procListeningInodes(fam.table, port)
		}
		if err != nil {
			return nil, err
		}
		inodes = append(inodes, found...)
	}
	return inodes, nil
}

// procListeningInodes reads the listeners on port from /proc/net/<table>.
func procListeningInodes(table string, port int) ([]uint64, error) {
	path := Root + "/net/" + table
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) && table == "tcp6" {
			return nil, nil // IPv6 disabled
		}
		return nil, fmt.Errorf("read listening sockets: %w", err)
	}
	defer func() { _ = f.Close() }()
	found, err := parseListening(f, port)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return found, nil
}

// parseListening reads a /proc/net/tcp{,6} table:
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 35210 ...
func parseListening(f *os.File, port int) ([]uint64, error) {
	var inodes []uint64
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		local := fields[1]
		i := strings.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(local[i+1:], 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil || inode == 0 {
			continue
		}
		inodes = append(inodes, inode)
	}
	return inodes, sc.Err()
}

// SocketHolders returns the pids of the processes that have one of the
// socket inodes open, sorted. Processes whose descriptors this process may
// not read (another user's, when not root) are not seen.
func SocketHolders(inodes []uint64) ([]int, error) {
	if len(inodes) == 0 {
		return nil, nil
	}
	want := socketNames(inodes)
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	var holders []int
	for _, pid := range pids {
		if holds(pid, want) {
			holders = append(holders, pid)
		}
	}
	slices.Sort(holders)
	return holders, nil
}

// Holds reports whether process pid has one of the socket inodes open.
func Holds(pid int, inodes []uint64) bool { return holds(pid, socketNames(inodes)) }

// socketNames are the fd link targets of the socket inodes.
func socketNames(inodes []uint64) map[string]bool {
	want := make(map[string]bool, len(inodes))
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	return want
}

func holds(pid int, want map[string]bool) bool {
	dir := Root + "/" + strconv.Itoa(pid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return false // exited, or not ours to read
	}
	defer func() { _ = d.Close() }()
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if link, err := os.Readlink(dir + "/" + n); err == nil && want[link] {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}
