"""grades: assessment entries, term and year results by the circulars, the assembled year record."""
