package signature

import (
	"fmt"
	"io"
)

// formatRedacted writes a key's redacted form for any fmt verb: the GoString
// form for %#v, a quoted form for %q, and the String form, with the
// directive's flags and width, for every other verb (%x and %d included), so
// no verb reaches the key bytes.
func formatRedacted(f fmt.State, verb rune, str, goStr string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, goStr)
	case verb == 'q':
		_, _ = fmt.Fprintf(f, fmt.FormatString(f, 'q'), str)
	default:
		_, _ = fmt.Fprintf(f, fmt.FormatString(f, 's'), str)
	}
}
