"""Write scikit-learn's bundled diabetes data as ``diabetes.csv`` beside this script: the table the example trains on.

442 patients, 10 baseline variables (age, sex, bmi, bp, s1-s6 blood serum measurements) in their original units
(``scaled=False``), and ``target``, a quantitative measure of disease progression one year after baseline
(Efron, Hastie, Johnstone and Tibshirani 2004, "Least Angle Regression", Annals of Statistics 32(2)).

    python export_data.py
"""

from pathlib import Path

from sklearn.datasets import load_diabetes

OUT = Path(__file__).resolve().parent / "diabetes.csv"


def main() -> None:
    frame = load_diabetes(as_frame=True, scaled=False).frame  # the features plus the "target" column
    frame.to_csv(OUT, index=False)
    print(f"wrote {OUT.name}: {len(frame)} rows, columns {list(frame.columns)}")


if __name__ == "__main__":
    main()
