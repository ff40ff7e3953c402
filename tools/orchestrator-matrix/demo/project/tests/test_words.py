import unittest

import stats


class WordCount(unittest.TestCase):
    def test_single_spaces(self):
        self.assertEqual(stats.word_count("one two three"), 3)

    def test_repeated_spaces_and_newlines(self):
        self.assertEqual(stats.word_count("one  two\nthree "), 3)


if __name__ == "__main__":
    unittest.main()
