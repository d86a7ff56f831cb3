# dasa: PGXS build plus the two project commands (demo, test).
EXTENSION  = dasa
MODULE_big = dasa
# src/ is layered (see src/dasa.h): api/ and runtime/ -> core/ -> storage/, ipc/.
OBJS       = $(patsubst %.c,%.o,$(wildcard src/*.c src/*/*.c))
DASA_HEADERS = $(wildcard src/*.h src/*/*.h)
DATA       = $(wildcard sql/dasa--*.sql)
PG_CPPFLAGS = -Isrc
PG_CFLAGS  = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

# No JIT bitcode: it would need clang at build time and buys nothing here.
override with_llvm = no

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
all:
	@echo "pg_config not found: run 'make demo' or 'make test' (they install what is missing), or 'bash scripts/deps.sh'" >&2; exit 1
endif

# Every object depends on the headers (PGXS does not track them).
$(OBJS): $(DASA_HEADERS)

.PHONY: demo test deps bench

deps:
	bash scripts/deps.sh

demo:
	bash scripts/demo.sh

test:
	bash test/run.sh

bench:
	bash bench/promises

# The external worker client (clients/): libdasa and dasa-worker, built by
# make, installed by make install (dasa-worker into pg_config --bindir).
ifneq ($(PGXS),)
.PHONY: clients install-clients clean-clients
all: clients
install: install-clients
clean: clean-clients
clients:
	$(MAKE) -C clients PG_CONFIG=$(PG_CONFIG)
install-clients: clients
	$(MAKE) -C clients install PG_CONFIG=$(PG_CONFIG)
clean-clients:
	$(MAKE) -C clients clean
endif
