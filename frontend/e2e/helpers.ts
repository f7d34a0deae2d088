import { expect, type Page } from "@playwright/test";

export const IOI = { p: "When Mary and John went to the store, John gave a drink to", a: " Mary", b: " John" };

export const open = async (page: Page, params: Record<string, string>) => {
  await page.goto("/?" + new URLSearchParams({ v: "1", ...params }).toString());
};

/** The number a test id shows (as rendered, three decimals). */
export const shown = async (page: Page, testid: string) => Number(await page.getByTestId(testid).textContent());

export const shot = (page: Page, name: string) => page.screenshot({ path: `e2e-artifacts/${name}.png`, fullPage: true });

export const firstRowId = async (page: Page) => {
  const cell = page.locator('[data-testid="node-table"] .ag-row[row-index="0"] [col-id="id"]').first();
  await expect(cell).toBeVisible();
  return (await cell.textContent())!.trim();
};
