package git

import (
	"fmt"
	"regexp"
	"strings"
)

// The patterns take + and a length check rather than {m,n} where they can:
// a bounded repetition compiles to a program that size, at every start of
// the CLI.
var (
	shaRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	hexRE = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	refRE = regexp.MustCompile(`^[A-Za-z0-9._/+@-]+$`)
)

// IsSHA reports whether s is a full commit id (SHA-1 or SHA-256, lower case).
func IsSHA(s string) bool { return shaRE.MatchString(s) }

// IsCommitID reports whether s can name a commit: 4 to 64 hex digits, in
// either case.
func IsCommitID(s string) bool { return len(s) >= 4 && len(s) <= 64 && hexRE.MatchString(s) }

// CheckRefName accepts a branch or tag name that is safe to give git as an
// argument: letters, digits and ._/+@-, not starting with - (an option),
// and none of what git itself refuses (.., //, @{, a component starting
// with a dot, a trailing / or . or .lock), at most 200 bytes.
func CheckRefName(ref string) error {
	bad := ref == "" || len(ref) > 200 || !refRE.MatchString(ref) ||
		strings.HasPrefix(ref, "-") || strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") ||
		strings.Contains(ref, "..") || strings.Contains(ref, "//") || strings.Contains(ref, "/.") || strings.Contains(ref, "@{") ||
		strings.HasSuffix(ref, "/") || strings.HasSuffix(ref, ".") || strings.HasSuffix(ref, ".lock") || ref == "@"
	if bad {
		return fmt.Errorf("%q is not a valid branch or tag name", ref)
	}
	return nil
}
