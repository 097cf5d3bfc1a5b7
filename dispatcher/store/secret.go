package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// SetSecret stores sec as the "v1" signing secret of delivery id, replacing
// an earlier one, with the attempt log's lifetime: it expires LogTTL from
// now, is kept without expiry while a failed record exists (MarkFailed) and
// expires again LogTTL after a redelivery (ClearFailed). The zero Secret is
// refused. Errors name the id, never the secret.
func (s *Store) SetSecret(ctx context.Context, id string, sec signature.Secret) error {
	if sec.IsZero() {
		return fmt.Errorf("store secret of %s: %w", id, signature.ErrInvalidKey)
	}
	if err := s.rdb.Set(ctx, s.keys.secret(s.tag(id), id), sec.Reveal(), s.logTTL).Err(); err != nil {
		return fmt.Errorf("store secret of %s: %w", id, err)
	}
	return nil
}

// Secret returns the signing secret of delivery id (one GET); ok is false
// when there is none (never set, expired or deleted). Errors name the id,
// never the secret.
func (s *Store) Secret(ctx context.Context, id string) (sec signature.Secret, ok bool, err error) {
	text, err := s.rdb.Get(ctx, s.keys.secret(s.tag(id), id)).Result()
	if errors.Is(err, redis.Nil) {
		return signature.Secret{}, false, nil
	}
	if err != nil {
		return signature.Secret{}, false, fmt.Errorf("read secret of %s: %w", id, err)
	}
	sec, err = signature.ParseSecret(text)
	if err != nil {
		return signature.Secret{}, false, fmt.Errorf("read secret of %s: %w", id, err)
	}
	return sec, true, nil
}

// DeleteSecret forgets the signing secret of delivery id; no secret is no error.
func (s *Store) DeleteSecret(ctx context.Context, id string) error {
	if err := s.rdb.Del(ctx, s.keys.secret(s.tag(id), id)).Err(); err != nil {
		return fmt.Errorf("delete secret of %s: %w", id, err)
	}
	return nil
}
