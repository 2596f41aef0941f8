package ui_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/ui"
)

func TestPassword(t *testing.T) {
	t.Parallel()
	h, err := ui.HashPassword("correct horse")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$"), h)
	require.True(t, ui.CheckPassword(h, "correct horse"))
	require.False(t, ui.CheckPassword(h, "correct horsE"))
	require.False(t, ui.CheckPassword(h, ""))
	h2, err := ui.HashPassword("correct horse")
	require.NoError(t, err)
	require.NotEqual(t, h, h2, "salted")
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=x$AA$AA", h[:len(h)-3] + "!!!"} {
		require.False(t, ui.CheckPassword(bad, "correct horse"), bad)
	}
	_, err = ui.HashPassword("")
	require.Error(t, err)
}
