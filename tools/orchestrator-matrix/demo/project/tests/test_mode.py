import unittest

import stats


class Mode(unittest.TestCase):
    def test_mode_is_the_most_common_value(self):
        self.assertEqual(stats.mode([1, 2, 2, 3]), 2)


if __name__ == "__main__":
    unittest.main()
