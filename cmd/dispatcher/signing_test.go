package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

func TestLoadSigningKeys(t *testing.T) {
	var gen bytes.Buffer
	if err := signingKeygenCommand(nil, &gen, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(gen.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], createdPrefix) || !strings.HasPrefix(lines[1], signature.PrefixPrivateKey) {
		t.Fatalf("signing-keygen printed %q, want a created line and a key", gen.String())
	}
	k2, _, _ := signature.GenerateKey(nil)
	k3, _, _ := signature.GenerateKey(nil)
	write := func(text string) string {
		f := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	file := write(gen.String() + "\n# the old key, no date\n" + k2.Reveal() + "\n# created 2026-01-01\n  " + k3.Reveal() + "  \n")
	sk, err := loadSigningKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	list := sk.list()
	if len(list) != 3 || list[1].PublicKey != k2.Public().String() || list[2].ID != k3.ID() || list[0].Version != "v1a" {
		t.Fatalf("list = %+v", list)
	}
	if list[0].CreatedAt == nil || time.Since(*list[0].CreatedAt) > time.Minute || list[1].CreatedAt != nil ||
		list[2].CreatedAt == nil || !list[2].CreatedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("created dates = %v, %v, %v; want keygen's, none, 2026-01-01", list[0].CreatedAt, list[1].CreatedAt, list[2].CreatedAt)
	}
	if s := sk.signer(); s == nil {
		t.Error("signer() is nil with keys")
	}
	if (signingKeys{}).signer() != nil {
		t.Error("signer() without keys is not a nil interface")
	}

	// `dispatcher signing-keys`: the same list, from the env or the flag.
	var out bytes.Buffer
	if err := signingKeysCommand([]string{"--json"}, func(k string) string {
		if k == "SIGNING_KEY_FILE" {
			return file
		}
		return ""
	}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"publicKey": "`+k3.Public().String()+`"`) || !strings.Contains(out.String(), `"createdAt": "2026-01-01T00:00:00Z"`) ||
		strings.Contains(out.String(), signature.PrefixPrivateKey) {
		t.Errorf("signing-keys --json printed %s", out.String())
	}
	out.Reset()
	if err := signingKeysCommand([]string{"--signing-key-file", file}, func(string) string { return "" }, &out, &bytes.Buffer{}); err != nil ||
		!strings.Contains(out.String(), k2.ID()) || !strings.Contains(out.String(), "2026-01-01T00:00:00Z") {
		t.Errorf("signing-keys printed %s, %v", out.String(), err)
	}

	for name, text := range map[string]string{
		"no keys":  "# created 2026-01-01\n",
		"bad date": "# created yesterday\n" + k2.Reveal() + "\n",
		"bad key":  k2.Reveal() + "x\n",
		"repeated": k2.Reveal() + "\n" + k2.Reveal() + "\n",
	} {
		_, err := loadSigningKeys(write(text))
		if err == nil {
			t.Errorf("%s: loaded", name)
		} else if strings.Contains(err.Error(), strings.TrimPrefix(k2.Reveal(), signature.PrefixPrivateKey)) {
			t.Errorf("%s: error %q shows the key", name, err)
		}
	}
	if _, err := loadSigningKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file loaded")
	}
}
