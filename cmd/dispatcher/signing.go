package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/worker"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// createdPrefix starts the comment line that dates the key on the next key
// line of SIGNING_KEY_FILE: "# created 2026-01-01" or an RFC 3339 time,
// optionally followed by anything (signing-keygen adds the id and public key).
const createdPrefix = "# created "

// signingKeys is SIGNING_KEY_FILE parsed: the v1a private keys in file
// order, all of which sign, and each key's creation time from its
// "# created" line (zero when the file does not say).
type signingKeys struct {
	keys    []signature.PrivateKey
	created []time.Time
}

// loadSigningKeys reads file: one "whsk_…" key per line, blank lines and
// "#" comments skipped, a "# created <date>" line dating the key after it.
// An unreadable file, a bad line, a repeated key, a bad date or a file
// without keys is an error naming the line, never its text (that is
// signature.ParseKeyFile's rule, which this applies).
func loadSigningKeys(file string) (signingKeys, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return signingKeys{}, fmt.Errorf("SIGNING_KEY_FILE: %w", err)
	}
	keys, err := signature.ParseKeyFile(bytes.NewReader(raw))
	if err != nil {
		return signingKeys{}, fmt.Errorf("SIGNING_KEY_FILE: %w", err)
	}
	if len(keys) == 0 {
		return signingKeys{}, errors.New("SIGNING_KEY_FILE: holds no whsk_ key (generate one with `dispatcher signing-keygen`)")
	}
	sk := signingKeys{keys: keys, created: make([]time.Time, 0, len(keys))}
	var pending time.Time
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, createdPrefix):
			word, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, createdPrefix)), " ")
			t, err := parseCreated(word)
			if err != nil {
				return signingKeys{}, fmt.Errorf("SIGNING_KEY_FILE line %d: want %q and a date such as 2026-01-01 or an RFC 3339 time", n, createdPrefix)
			}
			pending = t
		case line == "" || strings.HasPrefix(line, "#"):
		default: // a key line: ParseKeyFile accepted it, in this order
			sk.created = append(sk.created, pending)
			pending = time.Time{}
		}
	}
	return sk, nil
}

func parseCreated(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Parse(time.DateOnly, s)
}

// signer returns the worker's Signer, nil (unsigned) when there are no keys:
// a nil interface, not a Signer holding none.
func (sk signingKeys) signer() worker.Signer {
	if len(sk.keys) == 0 {
		return nil
	}
	return signature.Signer{Keys: sk.keys}
}

// list is what GET /v1/signing-keys and `dispatcher signing-keys` show.
func (sk signingKeys) list() []api.SigningKey {
	out := make([]api.SigningKey, len(sk.keys))
	for i, k := range sk.keys {
		out[i] = api.SigningKey{ID: k.ID(), Version: signature.VersionEd25519, PublicKey: k.Public().String()}
		if !sk.created[i].IsZero() {
			c := sk.created[i]
			out[i].CreatedAt = &c
		}
	}
	return out
}

// signingKeygenCommand prints a new key for SIGNING_KEY_FILE on stdout (a
// "# created" line naming the id and public key, then the private key),
// ready to append to the file; the public key alone goes to stderr too.
func signingKeygenCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return errUsage{errors.New("usage: dispatcher signing-keygen >> $SIGNING_KEY_FILE")}
	}
	priv, pub, err := signature.GenerateKey(nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s%s id %s public %s\n%s\n", createdPrefix, time.Now().UTC().Format(time.RFC3339), pub.ID(), pub, priv.Reveal())
	fmt.Fprintf(stderr, "public key %s (id %s): publish it once the key is in SIGNING_KEY_FILE\n", pub, pub.ID())
	return nil
}

// signingKeysCommand lists the public keys of SIGNING_KEY_FILE.
func signingKeysCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signing-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("signing-key-file", getenv("SIGNING_KEY_FILE"), "key file (default $SIGNING_KEY_FILE)")
	asJSON := fs.Bool("json", false, "print JSON, as GET /v1/signing-keys answers")
	if err := fs.Parse(args); err != nil {
		return errUsage{err}
	}
	if fs.NArg() != 0 {
		return errUsage{errors.New("usage: dispatcher signing-keys [--signing-key-file F] [--json]")}
	}
	if *file == "" {
		return errors.New("SIGNING_KEY_FILE (or --signing-key-file) is required")
	}
	sk, err := loadSigningKeys(*file)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]any{"keys": sk.list()})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tCREATED\tPUBLIC KEY")
	for _, k := range sk.list() {
		created := "-"
		if k.CreatedAt != nil {
			created = k.CreatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Version, created, k.PublicKey)
	}
	return tw.Flush()
}

// newTester builds the test sender from cfg: the delivery client, guard,
// timeout, User-Agent and signing keys the workers use.
func newTester(cfg config, guard *urlguard.Guard, sk signingKeys) (*worker.Tester, error) {
	roots, err := worker.LoadCertPool(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("config: WEBHOOK_CA_FILE: %w", err)
	}
	return &worker.Tester{
		Client:    worker.NewClient(worker.ClientOptions{Guard: guard, RootCAs: roots, Concurrency: 4}),
		Guard:     guard,
		Signer:    sk.signer(),
		Timeout:   cfg.DeliveryTimeout,
		UserAgent: payload.UserAgent(version),
	}, nil
}

// testSendCommand makes one test attempt to a URL and prints the result as
// JSON; it exits 1 unless the receiver answered 200. No rate limit: an
// operator command.
func testSendCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := loadConfig("test-send", args, getenv)
	if errors.Is(err, errHelp) {
		fmt.Fprintln(stdout, "usage: dispatcher test-send [flags] URL\n\nOne real, signed, guarded test webhook to URL now; prints the result as JSON.\nIt reads the worker's settings (SIGNING_KEY_FILE, DELIVERY_TIMEOUT, URLGUARD_*, WEBHOOK_CA_FILE).")
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errUsage{errors.New("usage: dispatcher test-send [flags] URL")}
	}
	var sk signingKeys
	if cfg.SigningKeyFile != "" {
		if sk, err = loadSigningKeys(cfg.SigningKeyFile); err != nil {
			return err
		}
	}
	tester, err := newTester(cfg, urlguard.New(cfg.AllowCIDRs...), sk)
	if err != nil {
		return err
	}
	res := tester.Send(ctx, rest[0], signature.Secret{})
	if err := printJSON(stdout, res); err != nil {
		return err
	}
	if !res.OK {
		return errRefused // the JSON says why
	}
	return nil
}
