package certs

import (
	"github.com/rs/zerolog"
	"go.uber.org/zap/zapcore"
)

// zapCore hands the ACME library's zap events to edged's zerolog logger,
// fields and all, so they are one stream with edged's own.
type zapCore struct {
	log    zerolog.Logger
	fields []zapcore.Field
}

func newZapCore(log zerolog.Logger) zapcore.Core {
	return &zapCore{log: log}
}

var _ zapcore.Core = (*zapCore)(nil)

func level(l zapcore.Level) zerolog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return zerolog.DebugLevel
	case l == zapcore.InfoLevel:
		return zerolog.InfoLevel
	case l == zapcore.WarnLevel:
		return zerolog.WarnLevel
	default:
		return zerolog.ErrorLevel
	}
}

func (c *zapCore) Enabled(l zapcore.Level) bool {
	return level(l) >= c.log.GetLevel() && level(l) >= zerolog.GlobalLevel()
}

func (c *zapCore) With(fs []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, fields: append(c.fields[:len(c.fields):len(c.fields)], fs...)}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	ev := c.log.WithLevel(level(e.Level))
	if e.LoggerName != "" {
		ev = ev.Str("logger", e.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (c *zapCore) Sync() error { return nil }
