"""The dataset formats `collect` writes: one module a format, plus the file names they share
(`names`), the page images they copy (`images`) and the writer interface (`base`)."""
